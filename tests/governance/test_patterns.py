"""The tier classifier: one table per family (what it must catch, look-alikes it must not),
table integrity, properties, and linear time on adversarial megabyte inputs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_shell.governance.patterns import PATTERNS_VERSION, RULES, Classification, classify_text

RULE_TIERS = {rule.name: rule.tier for rule in RULES}

# --- tier 3 families: rule -> texts it must set, then (look-alike, expected tier) -------------

DELETION = {
    "deletion.rm_recursive": [
        "rm -rf /tmp/x",
        "rm -fr /",
        "rm -r -f /srv/old",
        "rm --recursive build",
        "rm --recur build",
        "rm -ir old",
        "rm -Rf old",
        "rm -R old",
        "/bin/rm -rf x",
        "sudo rm -rf /",
        "find . -print0 | xargs -0 rm -rf",
        "rm old -rf",
        "cd /srv && rm -rf *",
        "x=$(rm -rf /tmp/a)",
        "`rm -rf /tmp/a`",
        "rm\t-rf /tmp/a",
        "\\rm -rf /",
        "r'm' -rf /",
        '"rm" -rf /',
        "rm${IFS}-rf /",
        "rm -rf \\\n  /srv",
        "rm --no-preserve-root /",
        "aws s3 rm s3://bucket --recursive",
        "docker exec web rm -rf /data",
        'echo "rm -rf is dangerous"',
    ],
    "deletion.rm_forced": ["rm -f /tmp/lock", "rm --force x", "rm -vf x", "sudo rm -f /etc/x"],
    "deletion.git_rm_forced": ["git rm -rf vendor", "git rm -f file", "git rm --cached --force x"],
    "deletion.find_delete": [
        "find /tmp -name '*.log' -delete",
        "find / -mtime +30 -delete",
        "find . -exec rm {} \\;",
        "find . -execdir /bin/rm {} +",
    ],
    "deletion.xargs_rm": ["find . -name x | xargs rm", "ls | xargs -n 1 rm"],
    "deletion.rsync_delete": ["rsync -a --delete src/ dst/", "rsync -av --delete-after a/ b/"],
}
DELETION_LOOKALIKES = [
    ("rm file.txt", 1),
    ("rmdir /tmp/empty", 1),
    ("grep -r foo .", 1),
    ("grep -rf patterns.txt .", 1),
    ("perform -rf", 1),
    ("charm -rf", 1),
    ("git rm -r --cached build", 1),
    ("docker run --rm -it alpine sh", 2),
    ("docker rm -f web", 2),
    ("podman rm -f web", 2),
    ("docker container rm -f web", 2),
    ("npm rm -g left-pad", 2),
    ("rsync -a src/ dst/", 1),
    ("find . -name '*.py'", 1),
    ("find . -exec grep -l x {} +", 1),
    ("ls -rf", 1),
    ("rm -i file", 1),
    ("rm -v file", 1),
    ("format c", 1),
]

DISK = {
    "disk.mkfs": [
        "mkfs.ext4 /dev/sdb1",
        "mkfs -t xfs /dev/vdb",
        "sudo mkfs.vfat /dev/sdc1",
        "/sbin/mkfs.btrfs /dev/x",
    ],
    "disk.mkfs_family": ["mkswap /dev/sdb2", "mke2fs /dev/sdb1"],
    "disk.wipefs": ["wipefs -a /dev/sdb", "blkdiscard /dev/nvme0n1"],
    "disk.shred": ["shred /dev/sda", "shred -u secret.txt", "find / -exec shred {} \\;"],
    "disk.partition": [
        "fdisk /dev/sda",
        "sfdisk /dev/sda < layout",
        "parted /dev/sda mklabel gpt",
        "gdisk /dev/sda",
        "sgdisk --zap-all /dev/sda",
        "echo ok; fdisk /dev/vda",
    ],
    "disk.dd_to_device": [
        "dd if=/dev/zero of=/dev/sda bs=1M",
        "dd if=image.iso of=/dev/sdb status=progress",
        "sudo dd of=/dev/nvme0n1 if=x",
        "dd if=x of=/dev/mapper/vg-root",
        "dd if=/dev/zero of=/dev/watchdog",
    ],
    "disk.redirect_to_device": [
        "> /dev/sda",
        "echo x >/dev/nvme0n1",
        "cat x > /dev/vda",
        "cat /dev/urandom >> /dev/sdb",
        "printf x 2>/dev/sda",
        "echo x >| /dev/sda",
        "echo x > '/dev/sda'",
    ],
    "disk.tee_to_device": ["cat image | tee /dev/sdb", "pv img | sudo tee -a /dev/mmcblk0"],
    "disk.lvm_remove": ["lvremove -f vg/root", "vgremove vg0"],
    "disk.zfs_destroy": ["zfs destroy tank/data", "zpool destroy tank"],
    "disk.cryptsetup_erase": ["cryptsetup luksFormat /dev/sdb", "cryptsetup erase /dev/sdb"],
    "disk.mdadm_zero": ["mdadm --zero-superblock /dev/sdb1"],
}
DISK_LOOKALIKES = [
    ("fdisk -l", 1),
    ("sudo fdisk -l /dev/sda", 2),
    ("parted --list", 1),
    ("lsblk /dev/sda", 1),
    ("dd if=/dev/zero of=/dev/null bs=1M count=10", 1),
    ("dd if=/dev/sda of=/backup/disk.img", 1),
    ("echo hi > /dev/null 2>&1", 1),
    ("echo hi >/dev/stderr", 1),
    ("echo hi > /dev/tty", 1),
    ("exec 3<>/dev/tcp/127.0.0.1/80", 1),
    ("cat /dev/sda | head -c 512 | xxd", 1),
    ("which mkfs.ext4", 1),
    ("man mkfs", 1),
    ("apt-cache show parted", 1),
    ("zfs list", 1),
    ("mkfsfoo", 1),
    ("format", 1),
    ("firmware --update", 1),
]

POWER = {
    "power.command": [
        "shutdown -h now",
        "reboot",
        "poweroff",
        "halt",
        "echo ok; reboot",
        "ls && sudo reboot",
        "false || reboot",
        "x=$(reboot)",
        "`reboot`",
        "env X=1 reboot",
        "LANG=C reboot",
        "/usr/sbin/reboot",
        "/sbin/shutdown -r +5",
        "sudo -u root reboot",
        "nohup sudo -E shutdown -r now",
        "timeout 10 reboot",
        "ssh web1 'reboot'",
        "ssh -p 2222 web1 sudo reboot",
        'bash -c "reboot"',
        "sh -c 'sleep 5; reboot'",
        "if true; then reboot; fi",
        "{ reboot; }",
        "date\nreboot\n",
        "find / -maxdepth 0 -exec reboot \\;",
    ],
    "power.init": ["init 0", "init 6", "telinit 0", "sudo init 6"],
    "power.systemctl": [
        "systemctl poweroff",
        "systemctl reboot",
        "systemctl halt",
        "systemctl kexec",
        "systemctl --force reboot",
        "systemctl isolate reboot.target",
        "systemctl start poweroff.target",
        "loginctl poweroff",
    ],
    "power.sysrq": ["echo b > /proc/sysrq-trigger"],
}
POWER_LOOKALIKES = [
    ("last reboot", 1),
    ("grep shutdown /var/log/syslog", 1),
    ("journalctl --list-boots | grep reboot", 1),
    ("reboot_count=3", 1),
    ("echo reboot_required", 1),
    ("./reboot.sh", 1),
    ("systemd-shutdown", 1),
    ("which reboot", 1),
    ("man halt", 1),
    ("command -v reboot", 1),
    ("echo reboot", 1),
    ("git commit -m 'fix: do not reboot'", 1),
    ("systemctl status reboot.target", 1),
    ("init", 1),
    ("initctl list", 1),
    ("rebooted", 1),
]

SQL = {
    "sql.drop": [
        "DROP TABLE users;",
        "drop database prod",
        'psql -c "DROP SCHEMA public CASCADE"',
        "Drop Table users",
        "DROP\nTABLE users",
        "mysql -e 'DROP TEMPORARY TABLE t'",
        "DROP USER bob;",
    ],
    "sql.truncate": ["TRUNCATE users;", "truncate table users", "TRUNCATE TABLE ONLY logs"],
    "sql.delete_without_where": ["DELETE FROM users;", 'psql -c "delete from sessions"', "DELETE FROM users"],
    "sql.redis_flush": ["redis-cli FLUSHALL", "redis-cli -n 2 flushdb"],
    "sql.mongo_drop": ["mongo app --eval 'db.dropDatabase()'"],
    "sql.dropdb": ["dropdb prod", "sudo -u postgres dropdb app"],
    "sql.mysqladmin_drop": ["mysqladmin -u root drop app"],
}
SQL_LOOKALIKES = [
    ("truncate -s 0 /var/log/app.log", 1),
    ("truncate --size 0 x", 1),
    ("DELETE FROM users WHERE id = 1;", 1),
    ("SELECT * FROM drop_table_audit", 1),
    ("dropbox status", 1),
    ("tc qdisc show | grep drop", 1),
    ("iptables -A INPUT -j DROP", 2),
    ("ip addr flush dev eth0", 2),
    ("echo backdrop table", 1),
]

HISTORY = {
    "history.git_push_force": [
        "git push --force",
        "git push -f origin main",
        "git push --force-with-lease",
        "git push origin main --force",
        "git push origin +main",
        "git push origin :feature",
        "git push --mirror backup",
        "git push origin --delete feature",
        "git -C /srv/repo push -f",
    ],
    "history.git_reset_hard": ["git reset --hard HEAD~1", "git reset --hard"],
    "history.git_clean": ["git clean -fd", "git clean -fdx", "git clean -f"],
    "history.git_rewrite": ["git filter-branch --tree-filter x", "git reflog expire --all"],
}
HISTORY_LOOKALIKES = [
    ("git push", 1),
    ("git push origin main", 1),
    ("git push -u origin feature", 1),
    ("git push --follow-tags", 1),
    ("git push origin HEAD:refs/for/main", 1),
    ("git reset HEAD file", 1),
    ("git reset --soft HEAD~1", 1),
    ("git clean -n", 1),
    ("git log --force", 1),
    ("git commit -m 'push -f later'", 1),
]

ACCOUNTS = {"accounts.delete": ["userdel bob", "deluser bob", "groupdel devs", "sudo userdel -r bob"]}
ACCOUNTS_LOOKALIKES = [("man userdel", 1), ("id bob", 1), ("getent passwd bob", 1)]

FIREWALL = {
    "firewall.iptables_flush": [
        "iptables -F",
        "ip6tables -F",
        "iptables --flush",
        "iptables -t nat -F",
        "iptables-legacy -F INPUT",
        "iptables -P INPUT DROP",
    ],
    "firewall.nft_flush": ["nft flush ruleset", "nft flush table inet filter"],
    "firewall.ufw_reset": ["ufw reset", "ufw --force reset"],
    "firewall.firewalld_panic": ["firewall-cmd --panic-on"],
}
FIREWALL_LOOKALIKES = [
    ("iptables -L", 1),
    ("iptables -nvL", 1),
    ("iptables-save", 1),
    ("iptables -P INPUT ACCEPT", 1),
    ("nft list ruleset", 1),
    ("ufw status", 1),
    ("iptables -A INPUT -p tcp --dport 22 -j ACCEPT", 2),
]

FORKBOMB = {
    "forkbomb.shell": [
        ":(){ :|:& };:",
        ":(){ :|: & };:",
        ":() { : | : & }; :",
        "bomb(){ bomb|bomb& };bomb",
        "function f { f|f& }; f",
        "echo hi; :(){ :|:& };:",
    ],
    "forkbomb.perl": ["perl -e 'fork while fork'"],
    "forkbomb.fork_loop": ["python3 -c 'import os\nwhile True: os.fork()'", "while(1) fork();"],
}
FORKBOMB_LOOKALIKES = [
    ("f() { echo hi; }; f", 1),
    ("awk '{ print $1 | \"sort\" }' x", 1),
    ("git fork", 1),
    ("while true; do date; sleep 1; done", 1),
]

# --- tier 2 families ------------------------------------------------------------------------------

SERVICES = {
    "services.systemctl": [
        "systemctl start nginx",
        "systemctl stop nginx",
        "systemctl restart nginx",
        "systemctl reload nginx",
        "systemctl enable --now nginx",
        "systemctl disable nginx",
        "systemctl mask nginx",
        "systemctl --user restart app",
        "sudo systemctl daemon-reload",
    ],
    "services.service": ["service nginx restart", "service ssh stop", "rc-service nginx reload"],
    "services.init_script": ["/etc/init.d/nginx restart"],
    "services.boot_links": ["update-rc.d nginx defaults", "chkconfig nginx on"],
    "services.kill_signal": ["kill -9 1234", "kill -KILL 1234", "kill -s KILL 1234", "kill -SIGKILL 1"],
    "services.kill_by_name": ["pkill nginx", "killall -9 java", "sudo pkill -f worker"],
    "services.crontab": ["crontab -e", "crontab -r", "crontab newjobs.txt", "crontab -u bob -e"],
    "services.mount": ["mount /dev/sdb1 /mnt", "mount -a", "mount -o remount,rw /"],
    "services.unmount": ["umount /mnt", "swapoff -a"],
    "services.sysctl": ["sysctl -w net.ipv4.ip_forward=1", "sysctl net.ipv4.ip_forward=1", "sysctl -p"],
    "services.modules": ["modprobe br_netfilter", "rmmod nf_tables"],
    "services.ip": ["ip link set eth0 down", "ip addr add 10.0.0.2/24 dev eth0", "ip route del default"],
    "services.ifupdown": ["ifdown eth0"],
    "services.nmcli": ["nmcli con down eth0", "nmcli networking off"],
    "services.host_settings": ["hostnamectl set-hostname web2", "timedatectl set-timezone UTC"],
    "services.iptables": ["iptables -A INPUT -j DROP", "iptables -D INPUT 3", "ip6tables -I INPUT -j ACCEPT"],
    "services.ufw": ["ufw allow 22", "ufw disable", "ufw --force enable"],
    "services.firewalld": ["firewall-cmd --add-port=80/tcp", "firewall-cmd --reload"],
    "services.nft": ["nft add rule inet filter input drop", "nft -f rules.nft"],
}
SERVICES_LOOKALIKES = [
    ("systemctl status nginx", 1),
    ("systemctl is-active nginx", 1),
    ("systemctl list-units --failed", 1),
    ("systemctl cat nginx", 1),
    ("service --status-all", 1),
    ("service nginx status", 1),
    ("kill 1234", 1),
    ("kill -0 1234", 1),
    ("kill -l", 1),
    ("pgrep nginx", 1),
    ("crontab -l", 1),
    ("crontab -u bob -l", 1),
    ("mount", 1),
    ("mount | grep sda", 1),
    ("mount -l", 1),
    ("findmnt /", 1),
    ("cat /proc/mounts", 1),
    ("sysctl net.ipv4.ip_forward", 1),
    ("sysctl -a", 1),
    ("lsmod", 1),
    ("ip a", 1),
    ("ip addr show", 1),
    ("ip route show", 1),
    ("ip -6 route", 1),
    ("nmcli con show", 1),
    ("nmcli con show uplink", 1),
    ("hostnamectl", 1),
    ("ufw status verbose", 1),
    ("firewall-cmd --list-all", 1),
    ("nft list ruleset", 1),
    ("skip", 1),
]

PACKAGES = {
    "packages.apt": [
        "apt install nginx",
        "apt-get -y install nginx",
        "sudo apt-get remove --purge nginx",
        "apt purge x",
        "apt -t bookworm-backports install x",
        "apt-get -o Dpkg::Options::=--force-confold upgrade",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y x",
    ],
    "packages.dnf": ["dnf install -y nginx", "yum remove x", "dnf update"],
    "packages.zypper": ["zypper in nginx", "zypper --non-interactive remove x"],
    "packages.pacman": ["pacman -Syu", "pacman -S nginx", "pacman -R nginx", "pacman --noconfirm -S x"],
    "packages.apk": ["apk add curl", "apk del curl"],
    "packages.dpkg": ["dpkg -i x.deb", "dpkg --purge x", "dpkg -r x"],
    "packages.rpm": ["rpm -ivh x.rpm", "rpm -Uvh x.rpm", "rpm -e x"],
    "packages.snap": ["snap install core", "brew install jq", "flatpak uninstall x"],
    "packages.pip": [
        "pip install requests",
        "pip3 install -U x",
        "pip3.11 install x",
        "python3 -m pip install x",
        "uv pip install x",
        "pip uninstall -y x",
    ],
    "packages.npm": ["npm install", "npm i -g x", "yarn add x", "pnpm remove x", "npm ci"],
    "packages.gem": ["gem install rails", "cargo install ripgrep"],
    "packages.conda": ["conda install numpy", "mamba create -n x"],
    "packages.composer": ["composer require x/y"],
    "packages.go": ["go install example.com/x@latest"],
}
PACKAGES_LOOKALIKES = [
    ("apt list --installed", 1),
    ("apt search install", 1),
    ("apt show nginx", 1),
    ("apt-cache search nginx", 1),
    ("apt-get update", 1),
    ("apt policy nginx", 1),
    ("dnf list installed", 1),
    ("yum info x", 1),
    ("pacman -Ss nginx", 1),
    ("pacman -Qi nginx", 1),
    ("pacman -Si nginx", 1),
    ("dpkg -l", 1),
    ("dpkg -L nginx", 1),
    ("dpkg -s nginx", 1),
    ("dpkg-query -W", 1),
    ("rpm -qa", 1),
    ("rpm -qi x", 1),
    ("pip list", 1),
    ("pip show x", 1),
    ("pip freeze", 1),
    ("npm ls", 1),
    ("npm run build", 1),
    ("cat /var/log/dpkg.log | grep install", 1),
    ("go build ./...", 1),
    ("gem list", 1),
]

CONTAINERS = {
    "containers.docker": [
        "docker run alpine",
        "docker run --rm -it alpine sh",
        "docker rm web",
        "docker stop web",
        "docker kill web",
        "docker exec -it web sh",
        "docker rmi x",
        "docker compose up -d",
        "docker compose -f prod.yml down",
        "docker-compose up -d",
        "docker system prune -af",
        "docker volume rm data",
        "docker -H tcp://x:2375 run x",
        "podman rm x",
        "podman run x",
        "nerdctl stop x",
    ],
    "containers.crictl": ["crictl rm x", "crictl stopp x"],
    "containers.kubectl": [
        "kubectl apply -f x.yaml",
        "kubectl delete pod x",
        "kubectl scale deploy x --replicas=3",
        "kubectl drain node1",
        "kubectl cordon node1",
        "kubectl -n prod rollout restart deploy/x",
        "kubectl --context prod edit cm x",
        "kubectl exec -it x -- sh",
        "oc delete project x",
        "k3s kubectl apply -f x",
        "microk8s kubectl delete ns x",
    ],
    "containers.helm": ["helm install x y", "helm upgrade x y", "helm uninstall x", "helm rollback x 1"],
}
CONTAINERS_LOOKALIKES = [
    ("docker ps", 1),
    ("docker ps -a", 1),
    ("docker images", 1),
    ("docker logs -f web", 1),
    ("docker inspect web", 1),
    ("docker container ls", 1),
    ("docker image ls", 1),
    ("docker compose ps", 1),
    ("docker-compose logs", 1),
    ("docker --context prod ps", 1),
    ("docker version", 1),
    ("docker --version", 1),
    ("docker system df", 1),
    ("crictl ps", 1),
    ("kubectl get pods", 1),
    ("kubectl -n kube-system get pods -o wide", 1),
    ("kubectl describe node x", 1),
    ("kubectl logs x", 1),
    ("kubectl rollout status deploy/x", 1),
    ("kubectl config get-contexts", 1),
    ("kubectl top pods", 1),
    ("helm list -A", 1),
    ("helm status x", 1),
    ("helm template x ./chart", 1),
    ("dockerd --version", 1),
]

PERMISSIONS = {
    "permissions.change": [
        "chmod 644 x",
        "chmod -R 755 /srv",
        "chown root:root x",
        "chgrp staff x",
        "setfacl -m u:bob:r x",
        "chattr +i x",
        "find . -exec chmod 644 {} \\;",
        "find . -type f | xargs chmod 600",
    ],
}
PERMISSIONS_LOOKALIKES = [
    ("ls -l", 1),
    ("stat -c %a x", 1),
    ("getfacl x", 1),
    ("man chmod", 1),
    ("lsattr x", 1),
]

ETC_WRITES = {
    "etc_writes.redirect": ["echo x > /etc/hosts", "echo x >> /etc/hosts", "cat > /etc/motd <<EOF\nhi\nEOF"],
    "etc_writes.dd": ["dd if=x of=/etc/hosts"],
    "etc_writes.tee": ["echo x | tee /etc/hosts", "echo x | tee -a /etc/hosts"],
    "etc_writes.copy_into": [
        "cp x /etc/",
        "cp x /etc",
        "cp nginx.conf /etc/nginx/nginx.conf",
        "install -m 644 x /etc/x",
        "cp -t /etc/ x y",
        "ln -s /opt/x.conf /etc/x.conf",
        "cp x /etc/x 2>/dev/null",
    ],
    "etc_writes.modify": [
        "mv x /etc/",
        "mv /etc/x /tmp/",
        "rm /etc/cron.d/job",
        "touch /etc/x",
        "mkdir /etc/app",
        "vi /etc/hosts",
    ],
}
ETC_WRITES_LOOKALIKES = [
    ("ls /etc", 1),
    ("cat /etc/passwd", 1),
    ("grep x /etc/hosts", 1),
    ("cp /etc/hosts /tmp/", 1),
    ("cp -r /etc /backup", 1),
    ("tar czf etc.tgz /etc", 1),
    ("echo x > /etcetera", 1),
    ("echo x > /tmp/etc/hosts", 1),
    ("ls /etcd/", 1),
    ("diff /etc/hosts /tmp/hosts", 1),
]

INPLACE_EDIT = {
    "inplace_edit.sed": ["sed -i s/a/b/ f", "sed -i.bak s/a/b/ f", "sed -Ei s/a/b/ f", "sed -e s/a/b/ -i f"],
    "inplace_edit.perl": ["perl -pi -e s/a/b/ f", "perl -i -pe s/a/b/ f", "ruby -pi -e x f"],
    "inplace_edit.awk": ["gawk -i inplace '{print}' f"],
}
INPLACE_EDIT_LOOKALIKES = [
    ("sed -n p f", 1),
    ("sed 's/-i/x/' f", 1),
    ("sed -E s/a/b/ f", 1),
    ("perl -Mstrict -e 1", 1),
    ("perl -ne print f", 1),
    ("perl -Ilib x.pl", 1),
    ("awk '{print}' f", 1),
]

PRIVILEGE = {
    "privilege.escalate": [
        "sudo ls",
        "sudo -i",
        "doas ls",
        "pkexec ls",
        "su -",
        "su root",
        "su -c 'id' bob",
        "ls; sudo id",
        "/usr/bin/sudo id",
        "nohup sudo id",
    ],
    "privilege.accounts": ["useradd bob", "usermod -aG sudo bob", "passwd bob", "visudo"],
}
PRIVILEGE_LOOKALIKES = [
    ("pseudocode", 1),
    ("echo pseudo", 1),
    ("man sudo", 1),
    ("cat /etc/sudoers.d/x", 1),
    ("cat /etc/passwd", 1),
    ("sudoku", 1),
    ("id -un", 1),
    ("du -sh .", 1),
]

FAMILIES = {
    "deletion": (DELETION, DELETION_LOOKALIKES),
    "disk": (DISK, DISK_LOOKALIKES),
    "power": (POWER, POWER_LOOKALIKES),
    "sql": (SQL, SQL_LOOKALIKES),
    "history": (HISTORY, HISTORY_LOOKALIKES),
    "accounts": (ACCOUNTS, ACCOUNTS_LOOKALIKES),
    "firewall": (FIREWALL, FIREWALL_LOOKALIKES),
    "forkbomb": (FORKBOMB, FORKBOMB_LOOKALIKES),
    "services": (SERVICES, SERVICES_LOOKALIKES),
    "packages": (PACKAGES, PACKAGES_LOOKALIKES),
    "containers": (CONTAINERS, CONTAINERS_LOOKALIKES),
    "permissions": (PERMISSIONS, PERMISSIONS_LOOKALIKES),
    "etc_writes": (ETC_WRITES, ETC_WRITES_LOOKALIKES),
    "inplace_edit": (INPLACE_EDIT, INPLACE_EDIT_LOOKALIKES),
    "privilege": (PRIVILEGE, PRIVILEGE_LOOKALIKES),
}
TIER3_FAMILIES = {"deletion", "disk", "power", "sql", "history", "accounts", "firewall", "forkbomb"}
CATCHES = [
    pytest.param(rule, text, id=f"{rule}:{text[:40]}")
    for catches, _ in FAMILIES.values()
    for rule, texts in catches.items()
    for text in texts
]
LOOKALIKES = [
    pytest.param(text, tier, id=f"{family}:{text[:40]}")
    for family, (_, lookalikes) in FAMILIES.items()
    for text, tier in lookalikes
]


@pytest.mark.parametrize(("rule", "text"), CATCHES)
def test_rule_catches_its_commands(rule: str, text: str) -> None:
    assert classify_text(text) == Classification(RULE_TIERS[rule], rule, rule.partition(".")[0])


@pytest.mark.parametrize(("text", "tier"), LOOKALIKES)
def test_lookalikes_get_the_lower_tier(text: str, tier: int) -> None:
    assert classify_text(text).tier == tier


# --- the table itself ------------------------------------------------------------------------------


def test_every_rule_has_catch_cases() -> None:
    covered = {rule for catches, _ in FAMILIES.values() for rule in catches}
    assert covered == set(RULE_TIERS)


def test_rule_names_are_unique_and_family_qualified() -> None:
    assert len(RULE_TIERS) == len(RULES)
    for rule in RULES:
        family, _, short = rule.name.partition(".")
        assert family == rule.family
        assert re.fullmatch(r"[a-z0-9_]+", short)


def test_families_have_their_documented_tier() -> None:
    for rule in RULES:
        assert rule.family in FAMILIES
        assert rule.tier == (3 if rule.family in TIER3_FAMILIES else 2), rule.name


def test_anchors_are_lowercase_and_present() -> None:
    for rule in RULES:
        assert rule.anchors, rule.name
        assert all(anchor == anchor.lower() and anchor for anchor in rule.anchors), rule.name


def test_no_pattern_starts_with_a_word_boundary() -> None:
    for rule in RULES:
        assert not rule.pattern.pattern.startswith(("\\b", "(?:\\b")), rule.name


def test_patterns_version_is_a_dated_version() -> None:
    assert re.fullmatch(r"\d{4}\.\d{1,2}\.\d+", PATTERNS_VERSION)


# --- classification behaviour -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\t  \n"])
def test_blank_text_is_reversible(text: str) -> None:
    assert classify_text(text) == Classification(1, None, None)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("sudo reboot", "power.command"),
        ("apt install x && rm -rf /var/cache/x", "deletion.rm_recursive"),
        ("chmod 600 key; git push --force", "history.git_push_force"),
        ("cat x | sudo tee /etc/hosts", "etc_writes.tee"),
        ("ls\n" * 1000 + "mkfs.ext4 /dev/sdb1", "disk.mkfs"),
    ],
)
def test_highest_tier_wins_anywhere_in_the_text(text: str, rule: str) -> None:
    assert classify_text(text).rule == rule


EVERYDAY_READS = [
    "ls -la",
    "uptime",
    "df -h; free -m; uptime",
    "cat /var/log/syslog | tail",
    "ps aux | grep -v grep | grep nginx",
    "journalctl -u ssh --since today | tail -n 50",
    "cat /etc/os-release",
    "ss -tlnp",
    "top -bn1 | head -20",
    "systemctl list-timers",
    "docker stats --no-stream",
    "du -sh /var/* 2>/dev/null | sort -h",
    "find /var/log -name '*.gz' -mtime +7",
    "curl -fsS http://127.0.0.1:8080/health",
    "git status && git log --oneline -5",
    "awk -F: '{print $1}' /etc/passwd",
    "ls -la /etc/nginx/sites-enabled/",
    "nginx -t",
    "id; groups; getent group sudo",
    "stat /etc/shadow",
    "iptables -S",
    "kubectl get events --sort-by=.metadata.creationTimestamp",
    "docker compose logs --tail=50 web",
    "dmesg | tail",
    "rsync -an --stats src/ dst/",
    "echo hello > /tmp/x",
    "mkdir -p a/b",
    "case $1 in start) echo go ;; esac",
]


@pytest.mark.parametrize("text", EVERYDAY_READS)
def test_everyday_commands_are_reversible(text: str) -> None:
    assert classify_text(text) == Classification(1, None, None)


def test_case_branches_are_command_positions() -> None:
    assert classify_text("case $1 in stop) reboot ;; esac").rule == "power.command"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_never_raises_and_tier_is_1_to_3(text: str) -> None:
    result = classify_text(text)
    assert result.tier in (1, 2, 3)
    assert (result.rule is None) == (result.family is None)
    assert classify_text(text) == result


_SHELLISH = st.text(alphabet=st.sampled_from(list("rmf -/;|&'\"\\$(){}:\n\tsudoebtcahl0x=")), max_size=300)


@settings(max_examples=300, deadline=None)
@given(_SHELLISH)
def test_a_destructive_line_after_anything_is_tier_3(prefix: str) -> None:
    assert classify_text(prefix + "\nrm -rf /srv/data").tier == 3


# --- linear time on adversarial megabyte inputs ----------------------------------------------------

MEGABYTE = 1 << 20
# Repeated units that make a backtracking regex go quadratic or worse. Each megabyte ends
# with a tier-3 line, so finishing also proves the scan reached the end.
ADVERSARIAL_UNITS = [
    " ",
    "-r",
    "rm ",
    "rm rm ",
    ";",
    ";sudo -u a ",
    "sudo ",
    "git push ",
    "git -C ",
    "x(){ x",
    ":(){ :",
    "DROP ",
    "delete from ",
    "/",
    "a/",
    " -exec ",
    "> /dev/",
    "/etc/",
    "docker -H ",
    "kubectl -n ",
    "iptables -P ",
    "while ",
    "'",
    '"',
    "\\",
    "\n",
    "A=1 ",
    "${IFS}",
    "{",
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("unit", ADVERSARIAL_UNITS)
def test_adversarial_megabyte_inputs_finish(unit: str) -> None:
    text = (unit * (MEGABYTE // len(unit) + 1))[:MEGABYTE]
    assert classify_text(text + "\nmkfs.ext4 /dev/sdb1").rule == "disk.mkfs"


@pytest.mark.timeout(20)
def test_megabyte_of_rm_flags_is_tier_3_and_finishes() -> None:
    assert classify_text("rm -" * (MEGABYTE // 4)).rule == "deletion.rm_recursive"  # "rm -rm" is a flag


@pytest.mark.timeout(20)
def test_dense_command_positions_with_every_anchor_present() -> None:
    names = " ".join(anchor for rule in RULES for anchor in rule.anchors)
    assert classify_text(";" * MEGABYTE + " " + names + "\nreboot").tier == 3
    assert classify_text("; a" * (MEGABYTE // 3) + "\nreboot").rule == "power.command"
