"""One table per rule family: spellings each family must catch, and look-alikes it must not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policy.conftest import Classify

# family -> (texts classified by a rule of that family, look-alikes that must not be)
FAMILIES: dict[str, tuple[list[str], list[str]]] = {
    "deletion": (
        [
            "rm -rf x",
            "rm -fr x",
            "rm -r -f x",
            "rm -Rf x",
            "rm x -rf",
            "rm -f x",
            "rm --recursive x",
            "rm --force x",
            "rm --no-preserve-root /",
            "find . -delete",
            "find . -exec rm {} +",
            "tar --remove-files -cf a.tar d",
            "rsync -a --delete a/ b/",
            "git rm -f x",
            "xargs rm < l",
        ],
        [
            "rm x",
            "rmdir x",
            "grep -r x .",
            "git rm -r --cached x",
            "docker rm -f x",
            "npm rm -g x",
            "find . -name x",
            "tar -cf a.tar d",
            "rsync -a a/ b/",
        ],
    ),
    "disk": (
        [
            "mkfs.ext4 /dev/sdb1",
            "mkswap /dev/sdb2",
            "wipefs -a /dev/sdb",
            "dd if=x of=/dev/sda",
            "echo x > /dev/sda",
            "tee /dev/sdb < /dev/zero",
            "shred /dev/sda",
            "fdisk /dev/sda",
            "blkdiscard /dev/sda",
            "lvremove vg/lv",
            "zfs destroy tank",
        ],
        [
            "fdisk -l",
            "dd if=/dev/sda of=/tmp/img",
            "echo x > /dev/null",
            "echo x > /dev/tcp/h/1",
            "echo x > /dev/stderr",
            "which mkfs",
            "lsblk",
        ],
    ),
    "power": (
        [
            "busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager PowerOff",
            "dbus-send --system --print-reply --dest=org.freedesktop.login1 /org/freedesktop/login1 "
            "org.freedesktop.login1.Manager.Reboot boolean:true",
            "gdbus call --system --dest org.freedesktop.login1 --object-path /org/freedesktop/login1 "
            "--method org.freedesktop.login1.Manager.PowerOff true",
            "busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager "
            "StartUnit ss rescue.target replace",
            "reboot",
            "shutdown -h now",
            "poweroff",
            "halt",
            "init 0",
            "telinit 6",
            "systemctl poweroff",
            "sudo reboot",
            "systemctl reboot",
            "systemctl isolate rescue.target",
            "echo b > /proc/sysrq-trigger",
        ],
        ["last reboot", "grep shutdown /var/log/syslog", "systemctl status reboot.target", "echo reboot"],
    ),
    "sql": (
        [
            "psql -c 'DROP TABLE x'",
            "mysql -e 'truncate table x'",
            "sqlite3 d 'DELETE FROM t'",
            "redis-cli FLUSHALL",
            "echo 'DROP DATABASE x' | psql",
            "dropdb prod",
            "sudo -u postgres dropdb app",
            "dropuser bob",
            "mysqladmin -u root drop app",
            "mysqladmin --force drop app",
            "pg_restore --clean -d app x.dump",
            "influx -execute 'DROP DATABASE x'",
            "etcdctl del --prefix /",
            "etcdctl snapshot restore s.db",
            "createdb x",
            "mysqladmin shutdown",
        ],
        [
            "grep -rn 'DROP TABLE' migrations/",
            "psql -c 'SELECT 1'",
            "mysql -e 'DELETE FROM t WHERE id=1'",
            "dropdb --help",
            "mysqladmin status",
            "mysqladmin -u root ping",
            "pg_restore -l x.dump",
            "etcdctl get /x",
            "etcdctl member list",
            "influx -execute 'SHOW DATABASES'",
            "truncate -s 0 f",
            "echo 'DROP TABLE x'",
        ],
    ),
    "history": (
        [
            "git push --force",
            "git push -f",
            "git push origin +x",
            "git push --mirror",
            "git reset --hard",
            "git clean -fd",
            "git checkout -- .",
            "git branch -D x",
            "git stash clear",
            "git filter-branch x",
        ],
        [
            "git push --help",
            "git reset --soft HEAD~1",
            "git clean -n",
            "git log",
            "git status",
            "git branch x",
        ],
    ),
    "accounts": (
        ["userdel bob", "deluser bob", "groupdel g"],
        ["id bob", "getent passwd bob", "echo userdel"],
    ),
    "firewall": (
        [
            "iptables -F",
            "iptables --flush",
            "iptables -P INPUT DROP",
            "nft flush ruleset",
            "nft 'flush ruleset'",
            "nft 'list ruleset; flush ruleset'",
            "nft 'delete  table inet x'",
            "nft -f /etc/nftables.conf",
            "nft --fi rules.nft",
            "ufw reset",
        ],
        ["iptables -L", "nft list ruleset", "nft 'list ruleset'", "nft -c -f rules.nft", "ufw status"],
    ),
    "services": (
        [
            "systemctl restart nginx",
            "echo x > /proc/sys/vm/x",
            "service nginx stop",
            "kill -9 1",
            "kill -KILL 1",
            "kill -s KILL 1",
            "kill 1",
            "pkill x",
            "killall x",
            "fuser -k 80/tcp",
            "crontab -r",
            "mount /dev/x /mnt",
            "umount /mnt",
            "sysctl -w a=1",
            "modprobe x",
            "ip link set eth0 down",
            "ufw allow 22",
            "hostnamectl set-hostname x",
            "ss -K dst 10.0.0.1",
            "busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager "
            "RestartUnit ss nginx.service replace",
            "iptables-restore -n < rules",
            "ss -tK",
            "ss --ki",
            "journalctl --vacuum-size=1M",
            "journalctl --rot",
            "dmesg -c",
            "dmesg --cl",
        ],
        [
            "systemctl status nginx",
            "ss -tlnp",
            "busctl list",
            "busctl status",
            "journalctl -u nginx --since today",
            "dmesg -T",
            "service nginx status",
            "kill -0 1",
            "kill -l",
            "pgrep x",
            "crontab -l",
            "mount",
            "sysctl -a",
            "ip a",
            "ufw status",
        ],
    ),
    "packages": (
        [
            "apt install x",
            "apt-get -y purge x",
            "dnf install x",
            "yum remove x",
            "pip install x",
            "pip3.11 install x",
            "python3.12 -m pip install x",
            "pacman -S x",
            "dpkg -i x.deb",
            "rpm -e x",
            "apk add x",
            "gem install x",
            "cargo install x",
            "snap install x",
        ],
        ["apt list", "apt-get update", "pip list", "pip show x", "pacman -Ss x", "dpkg -l", "rpm -qa"],
    ),
    "containers": (
        [
            "docker rm x",
            "docker run alpine",
            "docker compose down",
            "kubectl delete pod x",
            "helm uninstall x",
            "podman stop x",
            "kubectl exec x -- sh",
        ],
        [
            "docker ps",
            "docker images",
            "docker logs x",
            "kubectl get pods",
            "kubectl describe pod x",
            "helm list",
        ],
    ),
    "permissions": (
        [
            "chmod 755 x",
            "chmod -R 777 d",
            "chown root x",
            "chgrp adm x",
            "setfacl -m u:x:r f",
            "chattr +i f",
            "install -m 700 a b",
            "cp -p a b",
            "cp --preserve=mode a b",
            "chmod 4755 x",
            "chmod u+s x",
            "setcap x f",
        ],
        ["ls -l x", "stat x", "getfacl f", "lsattr f", "cp a b", "install a b"],
    ),
    "etc_writes": (
        [
            "echo x > /etc/motd",
            "tee /etc/motd < f",
            "cp x /etc/",
            "mv x /etc/x",
            "touch /etc/x",
            "rm /etc/x",
            "echo x >> ~/.ssh/authorized_keys",
            "cp u.service /etc/systemd/system/",
            "ln -s /etc /tmp/e",
        ],
        ["ls /etc", "cat /etc/passwd", "grep x /etc/hosts", "cp /etc/hosts /tmp/", "tar czf x.tgz /etc"],
    ),
    "inplace_edit": (
        [
            "sed -i s/a/b/ f",
            "sed -i.bak s/a/b/ f",
            "sed --in-place s/a/b/ f",
            "sed -i -n p f",
            "gawk -i inplace '{print}' f",
            "ed f < /dev/null",
        ],
        ["sed -n p f", "sed 's/-i/x/' f", "perl -ne print f", "awk '{print}' f"],
    ),
    "privilege": (
        ["sudo ls", "doas ls", "su bob -c id", "pkexec ls", "setpriv --reuid=1 id", "useradd x", "passwd x"],
        ["echo sudo", "man sudo", "cat /etc/sudoers.d/x", "id"],
    ),
}


@pytest.mark.parametrize(("family", "text"), [(f, t) for f, (c, _) in FAMILIES.items() for t in c])
def test_each_family_catches_its_spellings(classify: Classify, family: str, text: str) -> None:
    analysis = classify(text)
    families = {command.rule.split(".")[0] for command in analysis.commands}
    assert family in families, [(c.text, c.tier, c.rule) for c in analysis.commands]
    assert analysis.tier >= 2


@pytest.mark.parametrize(("family", "text"), [(f, t) for f, (_, looks) in FAMILIES.items() for t in looks])
def test_look_alikes_are_not_caught(classify: Classify, family: str, text: str) -> None:
    analysis = classify(text)
    families = {command.rule.split(".")[0] for command in analysis.commands if command.tier >= 2}
    assert family not in families, [(c.text, c.tier, c.rule) for c in analysis.commands]


def test_a_symlink_into_etc_makes_the_write_a_write_into_etc(classify: Classify, tmp_path: Path) -> None:
    (tmp_path / "e").symlink_to("/etc")
    assert classify(f"echo x > {tmp_path / 'e'}/motd").rule == "etc_writes.write"
    assert classify(f"echo x > {tmp_path}/plain").tier == 1
