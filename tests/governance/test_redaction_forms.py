"""Every secret form relay-shell must redact, with a fresh random secret each run.

Each class has its own table of forms. A form is a template with ``{s}`` where the secret
goes and the parts that must survive (the key, flag, program or user name: redaction
hides values, not what ran). For each: the secret is gone, what must stay stays, and a
second pass changes nothing. Look-alikes of every class must pass through untouched, and
an empty value is never shown as ``[REDACTED]``.
"""

from __future__ import annotations

import secrets
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_shell.governance.redaction import (
    REDACTED,
    redact,
    redact_session_input,
    redact_text,
    scrub_all_rules,
)
from tests.governance.test_redaction import ALL_CASES, FRAGMENTS
from tests.governance.test_redaction import LOOK_ALIKES as FAMILY_LOOK_ALIKES

_ALPHABET = string.ascii_letters + string.digits


def fresh_secret() -> str:
    """16-40 random letters and digits (at least one of each), different on every run."""
    length = 16 + secrets.randbelow(25)
    while True:
        candidate = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        if any(char.isdigit() for char in candidate) and any(char.isalpha() for char in candidate):
            return candidate


# (template, parts that must survive)
FORMS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "env names": [
        ("STRIPE_KEY={s} ./run", ("STRIPE_KEY=", "./run")),
        ("SMTP_PW={s} mail", ("SMTP_PW=",)),
        ("RSYNC_PASS={s} rsync a b", ("RSYNC_PASS=", "rsync a b")),
        ("GIT_AUTH={s} git fetch", ("GIT_AUTH=",)),
        ("export AWS_CREDS='{s}'", ("export AWS_CREDS=",)),
        ("SSHPASS={s} sshpass -e ssh host", ("SSHPASS=", "sshpass -e ssh host")),
        ("DB_PASSWORD_URL={s} ./migrate", ("DB_PASSWORD_URL=",)),
        ("export APP_PASSWORD_FILE_CONTENT={s}", ("APP_PASSWORD_FILE_CONTENT=",)),
        ("PGPASSWORD={s} psql -h db", ("PGPASSWORD=", "psql -h db")),
    ],
    "client flags": [
        ("redis-cli -h cache -a {s} ping", ("redis-cli -h cache -a ", "ping")),
        ("redis-cli -a '{s}' --no-auth-warning", ("redis-cli -a '",)),
        ("mongo -u admin -p {s} admin", ("mongo -u admin -p ", "admin")),
        ("mongosh --username a -p {s} --authenticationDatabase admin", ("mongosh", "-p ")),
        ("ldapsearch -x -D cn=admin,dc=x -w {s} -b dc=x", ("ldapsearch", "-w ", "-b dc=x")),
        ("ldapmodify -x -w{s} -f change.ldif", ("ldapmodify", "-f change.ldif")),
        ("ldappasswd -x -D cn=admin -w root -s {s} uid=alice", ("ldappasswd", "-s ", "uid=alice")),
        ("openssl enc -aes-256-cbc -k {s} -in f -out f.enc", ("openssl enc", "-k ", "-in f")),
        ("openssl rsa -passin pass:{s} -in k.pem", ("-passin pass:", "-in k.pem")),
        ("openssl pkcs12 -export -passout 'pass:{s}' -out a.p12", ("-passout 'pass:", "-out a.p12")),
        ("zip -r -P {s} backup.zip dir", ("zip -r -P ", "backup.zip dir")),
        ("unzip -P {s} backup.zip", ("unzip -P ", "backup.zip")),
        ("7z a -p{s} -mhe=on a.7z dir", ("7z a -p", "a.7z dir")),
        ("smbclient //fs/share -U alice%{s} -c ls", ("smbclient //fs/share -U alice%", "-c ls")),
        ("smbclient -U 'CORP\\alice%{s}' //fs/share", ("-U 'CORP\\alice%",)),
        ("rpcclient -U admin%{s} dc1", ("rpcclient -U admin%", "dc1")),
        ("htpasswd -b -c /etc/nginx/htpasswd alice {s}", ("htpasswd -b -c /etc/nginx/htpasswd alice ",)),
        ("htpasswd -nbB alice {s}", ("htpasswd -nbB alice ",)),
        ("curl -u alice:{s} https://api.example.com", ("curl -u alice:", "https://api.example.com")),
        ("curl -b 'session={s}' https://x", ("curl -b '",)),
        ('curl --cookie "sid={s}; theme=dark" https://x', ("curl --cookie ",)),
        ("sshpass -p {s} ssh -p 2222 host", ("sshpass -p ", "ssh -p 2222 host")),
        ("docker login -u me -p {s} registry.io", ("docker login -u me -p ", "registry.io")),
        (
            "java -Djavax.net.ssl.keyStorePassword={s} -jar app.jar",
            ("-Djavax.net.ssl.keyStorePassword=", "-jar"),
        ),
        ("mvn -Ddb.password={s} -DskipTests verify", ("-Ddb.password=", "-DskipTests verify")),
    ],
    "program options": [
        ("sqlcmd -S db -U sa -P {s} -Q 'select 1'", ("sqlcmd -S db -U sa -P ", "-Q 'select 1'")),
        ("sqlcmd -S db -U sa -P'{s}'", ("sqlcmd -S db -U sa -P'",)),
        ("mssql-cli -S db -U sa -P {s}", ("mssql-cli -S db -U sa -P ",)),
        ("bcp dbo.t out t.dat -S db -U sa -P{s} -c", ("bcp dbo.t out t.dat -S db -U sa -P", "-c")),
        (
            "ipmitool -I lanplus -H 10.0.0.9 -U admin -P {s} chassis status",
            ("-U admin -P ", "chassis status"),
        ),
        ("sudo -u ops ipmitool -H bmc -U root -P '{s}' power cycle", ("sudo -u ops ipmitool", "power cycle")),
        ("snmpwalk -v2c -c {s} 10.0.0.1 system", ("snmpwalk -v2c -c ", "10.0.0.1 system")),
        ("snmpget -v 2c -c'{s}' sw1 sysName.0", ("snmpget -v 2c -c'", "sw1 sysName.0")),
        (
            "snmpget -v3 -l authPriv -u mon -a SHA -A {s} -x AES -X {s} sw1 sysUpTime.0",
            ("-a SHA -A ", "-x AES -X ", "sw1 sysUpTime.0"),
        ),
        ("snmpset -v2c -c {s} rtr ifAdminStatus.2 i 2", ("snmpset -v2c -c ", "rtr ifAdminStatus.2 i 2")),
        ("az login -u me@example.com -p {s}", ("az login -u me@example.com -p ",)),
        (
            "az login --service-principal -u app -p={s} --tenant t",
            ("az login --service-principal -u app -p=",),
        ),
        ("useradd -m -s /bin/bash -p '{s}' alice", ("useradd -m -s /bin/bash -p '", "' alice")),
        ("usermod -p {s} bob", ("usermod -p ", "bob")),
        ("ssh-keygen -t ed25519 -N '{s}' -f ~/.ssh/k", ("ssh-keygen -t ed25519 -N '", "-f ~/.ssh/k")),
        (
            "mosquitto_pub -h broker -u dev -P {s} -t a -m b",
            ("mosquitto_pub -h broker -u dev -P ", "-t a -m b"),
        ),
        ("xfreerdp /v:host /u:admin /p:{s} /cert:ignore", ("xfreerdp /v:host /u:admin /p:", "/cert:ignore")),
        ("rar a -p{s} backup.rar dir", ("rar a -p", "backup.rar dir")),
        ("smbpasswd -w {s}", ("smbpasswd -w ",)),
        ("ssh db1 sqlcmd -U sa -P {s} -Q q", ("ssh db1 sqlcmd -U sa -P ", "-Q q")),
        (
            "bash -c 'ipmitool -H bmc -U admin -P {s} sel list'",
            ("bash -c 'ipmitool -H bmc -U admin -P ", "sel list'"),
        ),
    ],
    "long options": [
        ("tool --db-pass {s} --verbose", ("tool --db-pass ", "--verbose")),
        ("app --community={s} --host sw1", ("app --community=", "--host sw1")),
        ("nmap --script snmp-info --script-args-community {s} h", ("--script-args-community ",)),
        ("wifi --psk '{s}' --ssid home", ("wifi --psk '", "--ssid home")),
        ("deploy --client-secret={s} --region eu", ("deploy --client-secret=", "--region eu")),
        ("snmpcheck --authpass {s} --privpass {s} sw1", ("--authpass ", "--privpass ", "sw1")),
        ("gh-tool --secret-key {s}", ("gh-tool --secret-key ",)),
        ("backup --encryption-key={s} /srv", ("backup --encryption-key=", "/srv")),
    ],
    "positional secrets": [
        ("rabbitmqctl add_user deploy {s}", ("rabbitmqctl add_user deploy ",)),
        ("rabbitmqctl change_password deploy '{s}'", ("rabbitmqctl change_password deploy '",)),
        ("sudo rabbitmqctl -n rabbit@mq1 authenticate_user ops {s}", ("authenticate_user ops ",)),
        ("wpa_passphrase HomeNet {s} > /etc/wpa.conf", ("wpa_passphrase HomeNet ", "> /etc/wpa.conf")),
        ("wpa_passphrase 'My Net' \"{s}\"", ("wpa_passphrase 'My Net' \"",)),
        ("vault login {s}", ("vault login ",)),
        ("VAULT_ADDR=https://v:8200 vault login -no-print {s}", ("vault login -no-print ",)),
        ("bw unlock {s} --raw", ("bw unlock ", "--raw")),
        ("bw login me@example.com {s}", ("bw login me@example.com ",)),
        ("mysqladmin -u root password {s}", ("mysqladmin -u root password ",)),
        ("net user alice {s} /add /domain", ("net user alice ", "/add /domain")),
        ("nmcli dev wifi connect HomeNet password {s}", ("nmcli dev wifi connect HomeNet password ",)),
        ("nmcli con modify home wifi-sec.psk '{s}'", ("nmcli con modify home wifi-sec.psk '",)),
        ("nmcli connection add type wifi ssid X 802-1x.password {s}", ("802-1x.password ",)),
        ("wpa_cli set_network 0 psk '\"{s}\"'", ("wpa_cli set_network 0 psk '",)),
        ("redis-cli -h cache CONFIG SET requirepass {s}", ("CONFIG SET requirepass ",)),
        ("redis-cli AUTH default {s}", ("redis-cli AUTH default ",)),
        (
            "npm config set //registry.example.com/:_authToken {s}",
            ("npm config set //registry.example.com/:_authToken ",),
        ),
        ("poetry config pypi-token.pypi {s}", ("poetry config pypi-token.pypi ",)),
        ("ipmitool user set password 2 {s}", ("ipmitool user set password 2 ",)),
        ("openssl passwd -6 -salt abc {s}", ("openssl passwd -6 -salt abc ",)),
        ("dotnet user-secrets set Db:Password {s}", ("dotnet user-secrets set Db:Password ",)),
    ],
    "user and secret pairs": [
        ("lftp -u deploy,{s} ftp.example.com", ("lftp -u deploy,", "ftp.example.com")),
        ("lftp -u 'deploy,{s}' -e 'mirror -R . /www; quit' ftp", ("lftp -u 'deploy,", "mirror -R")),
        (
            "lftp -c 'open -u deploy,{s} ftp.example.com; ls'",
            ("lftp -c 'open -u deploy,", "ftp.example.com; ls'"),
        ),
        ("tool --user admin:{s} https://api", ("tool --user admin:", "https://api")),
        ("http -a alice:{s} GET https://api/x", ("http -a alice:", "GET https://api/x")),
        ("http --auth=alice:{s} https://api/x", ("http --auth=alice:",)),
        ("wget --user=alice --password={s} https://x/f", ("wget --user=alice --password=", "https://x/f")),
        ("wget --http-user alice --http-password '{s}' https://x/f", ("--http-password '",)),
        ("sqlplus -s scott/{s}@orcl @report.sql", ("sqlplus -s scott/", "@orcl @report.sql")),
        ("expdp system/{s} directory=dp dumpfile=x.dmp", ("expdp system/", "directory=dp dumpfile=x.dmp")),
    ],
    "fed on stdin": [
        ("echo -e '{s}\\n{s}' | passwd", ("echo -e '", "' | passwd")),
        ("printf '%s\\n%s\\n' {s} {s} | passwd alice", ("printf '%s\\n%s\\n' ", "| passwd alice")),
        ("echo {s} | sudo passwd --stdin alice", ("| sudo passwd --stdin alice",)),
        ("passwd alice <<< '{s}'", ("passwd alice <<< '",)),
        ("sudo chpasswd <<< alice:{s}", ("sudo chpasswd <<< ",)),
        ("echo {s} | smbpasswd -s -a bob", ("| smbpasswd -s -a bob",)),
        ("echo '{s}' | kinit admin@EXAMPLE.COM", ("| kinit admin@EXAMPLE.COM",)),
        (
            "echo -n {s} | cryptsetup luksOpen /dev/sdb1 vault -",
            ("echo -n ", "| cryptsetup luksOpen /dev/sdb1"),
        ),
        ("echo {s} | gh auth login --with-token", ("| gh auth login --with-token",)),
        ("echo {s} | az acr login -n reg --password-stdin", ("| az acr login -n reg --password-stdin",)),
        ("echo {s} | gpg --batch --passphrase-fd 0 -d f.gpg", ("| gpg --batch --passphrase-fd 0 -d f.gpg",)),
        ("yes {s} | passwd bob", ("yes ", "| passwd bob")),
        ("echo {s} | vault login -", ("| vault login -",)),
        ("echo {s} | wpa_passphrase HomeNet", ("| wpa_passphrase HomeNet",)),
        ("(echo {s}; echo {s}) | passwd", ("(echo ", "; echo ", ") | passwd")),
        ("{ echo {s}; echo {s}; } | sudo passwd bob", ("{ echo ", "; } | sudo passwd bob")),
        ("passwd bob <<EOF\n{s}\n{s}\nEOF\necho done", ("passwd bob <<EOF\n", "\nEOF\necho done")),
        (
            "cat <<EOF | chpasswd\nalice:{s}\nbob:{s}\nEOF",
            ("cat <<EOF | chpasswd\nalice:", "\nbob:", "\nEOF"),
        ),
        ("cat <<< {s} | passwd", ("cat <<< ", " | passwd")),
    ],
    "sql": [
        ("psql -c \"CREATE USER app WITH PASSWORD '{s}'\"", ("CREATE USER app WITH PASSWORD '",)),
        ("ALTER ROLE app ENCRYPTED PASSWORD '{s}';", ("ALTER ROLE app ENCRYPTED PASSWORD '",)),
        ("mysql -e \"ALTER USER 'u'@'%' IDENTIFIED BY '{s}'\"", ("IDENTIFIED BY '",)),
        (
            "CREATE USER u IDENTIFIED WITH mysql_native_password BY '{s}';",
            ("IDENTIFIED WITH mysql_native_password BY",),
        ),
        ("SET PASSWORD FOR 'u'@'h' = PASSWORD('{s}');", ("SET PASSWORD FOR 'u'@'h' = PASSWORD('",)),
        ("CREATE USER scott IDENTIFIED BY {s};", ("CREATE USER scott IDENTIFIED BY ",)),
        ("alter user app password '{s}'", ("alter user app password '",)),
    ],
    "stdin readers": [
        ("echo 'root:{s}' | chpasswd", ("echo ", "| chpasswd")),
        ('chpasswd <<< "alice:{s}"', ("chpasswd <<< ",)),
        (
            "chpasswd <<EOF\nalice:{s}\nbob:{s}\nEOF\necho done",
            ("chpasswd <<EOF\nalice:", "bob:", "EOF\necho done"),
        ),
        ("echo {s} | sudo -S apt-get update", ("| sudo -S apt-get update",)),
        ("printf '%s\\n' '{s}' | sudo -k -S -u root true", ("printf '%s\\n'", "| sudo -k -S")),
        (
            "echo '{s}' | docker login -u me --password-stdin registry.io",
            ("docker login -u me --password-stdin",),
        ),
        ("passwd --stdin alice <<< '{s}'", ("passwd --stdin alice <<< ",)),
    ],
    "headers and cookies": [
        ("curl -H 'Cookie: session={s}; lang=en' https://x", ("curl -H 'Cookie: ", "' https://x")),
        ("Set-Cookie: id={s}; HttpOnly; Secure", ("Set-Cookie: ",)),
        ('{{"Cookie": "sid={s}"}}', ('{"Cookie": "',)),
        ("curl -H 'Authorization: Basic {s}' https://x", ("Authorization: Basic ",)),
    ],
    "urls and hosts": [
        (
            "curl -X POST https://hooks.slack.com/services/T0123ABC/B0456DEF/{s}",
            ("https://hooks.slack.com/services/",),
        ),
        ("https://discord.com/api/webhooks/123456789/{s}", ("https://discord.com/api/webhooks/",)),
        ("git clone https://{s}@github.com/org/repo.git", ("git clone https://", "@github.com/org/repo.git")),
        (
            "git remote add o https://oauth2:{s}@gitlab.example.com/g/r.git",
            ("https://oauth2:", "@gitlab.example.com"),
        ),
        ("admin:{s}@db1.example.com", ("admin:", "@db1.example.com")),
        ("ssh_exec deploy:{s}@10.0.0.5 uptime", ("deploy:", "@10.0.0.5 uptime")),
        ("redis://default:{s}@cache:6379/0", ("redis://default:", "@cache:6379/0")),
    ],
    "cloud and vault": [
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={s};EndpointSuffix=core.windows.net",
            ("AccountName=acct;AccountKey=", ";EndpointSuffix=core.windows.net"),
        ),
        ("https://acct.blob.core.windows.net/c/f?sv=2022-11-02&sr=b&sig={s}", ("sv=2022-11-02&sr=b&sig=",)),
        (
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey={s}",
            ("SharedAccessKey=",),
        ),
        ("vault login hvs.{s}", ("vault login hvs.",)),
        ("curl -H 'X-Vault-Token: hvs.{s}' https://vault:8200/v1/secret", ("X-Vault-Token: ",)),
        ("aws configure set aws_secret_access_key {s}", ("aws configure set aws_secret_access_key ",)),
        ("aws configure set aws_session_token {s} --profile ci", ("aws_session_token ", "--profile ci")),
        (
            "aws --profile ci configure set aws_secret_access_key {s}",
            ("configure set aws_secret_access_key ",),
        ),
    ],
    "admin commands": [
        ("net use \\\\fs\\share {s} /user:alice", ("net use \\\\fs\\share ", " /user:alice")),
        ("net use \\\\fs\\share /user:alice {s}", ("net use \\\\fs\\share /user:alice ",)),
        (
            "net use Z: \\\\fs\\data {s} /user:CORP\\alice /persistent:no",
            ("Z: \\\\fs\\data ", "/persistent:no"),
        ),
        ("net use \\\\fs\\share /u:alice /persistent:yes {s}", ("/u:alice /persistent:yes ",)),
        ("net use * \\\\fs\\data '{s}' /user:alice", ("net use * \\\\fs\\data '", "' /user:alice")),
        ("NET USE \\\\fs\\share {s} /USER:alice", ("NET USE \\\\fs\\share ", " /USER:alice")),
        ("net.exe use //fs/share {s} /user:alice", ("net.exe use //fs/share ",)),
        ("smbclient //fs/share {s} -U alice -c ls", ("smbclient //fs/share ", " -U alice -c ls")),
        ("smbclient -U alice '\\\\fs\\share' '{s}'", ("smbclient -U alice '\\\\fs\\share' '",)),
        ("mongodump -u admin -p {s} --db shop", ("mongodump -u admin -p ", " --db shop")),
        ("mongorestore -u admin -p{s} dump/", ("mongorestore -u admin -p", " dump/")),
        ("mongoexport --username a --password={s} -c c", ("--password=", " -c c")),
        ("pscp -pw {s} f.txt user@host:/tmp", ("pscp -pw ", " f.txt user@host:/tmp")),
        ("plink -ssh -pw '{s}' user@host uptime", ("plink -ssh -pw '", "' user@host uptime")),
        ("psftp.exe -pw {s} user@host", ("psftp.exe -pw ", " user@host")),
        ("winrs -r:host -u:alice -p:{s} ipconfig", ("winrs -r:host -u:alice -p:", " ipconfig")),
        (
            "wmic /node:h /user:alice /PASSWORD:{s} os get caption",
            ("/user:alice /PASSWORD:", " os get caption"),
        ),
        ("sc config svc obj= .\\alice password= {s}", ("sc config svc obj= .\\alice password= ",)),
        ('sc.exe config svc PASSWORD= "{s}"', ('sc.exe config svc PASSWORD= "',)),
        ("netdom join pc /domain:x /userd:a /passwordd:{s}", ("/userd:a /passwordd:",)),
        ("certutil -p {s} -importpfx f.pfx", ("certutil -p ", " -importpfx f.pfx")),
        ("smbmap -u alice -p {s} -H host", ("smbmap -u alice -p ", " -H host")),
        ("enum4linux -u alice -p {s} host", ("enum4linux -u alice -p ", " host")),
        (
            "ConvertTo-SecureString '{s}' -AsPlainText -Force",
            ("ConvertTo-SecureString '", "' -AsPlainText -Force"),
        ),
        (
            "$pw = ConvertTo-SecureString -String '{s}' -AsPlainText -Force",
            ("$pw = ConvertTo-SecureString -String '", "-AsPlainText"),
        ),
        ("mc alias set minio http://h:9000 admin {s}", ("mc alias set minio http://h:9000 admin ",)),
        ("mc config host add s3 https://s3 AKIA {s}", ("mc config host add s3 https://s3 AKIA ",)),
        # cmd.exe expands no $: a password spelled with one is still the password
        ("net use \\\\fs\\share ${s} /user:alice", ("net use \\\\fs\\share ", " /user:alice")),
        ("curl --oauth2-bearer {s} https://api", ("curl --oauth2-bearer ", " https://api")),
    ],
    "admin commands already covered": [
        ("smbclient -U alice%{s} //fs/share", ("smbclient -U alice%", " //fs/share")),
        ("mysql -u root -p{s} -h db", ("mysql -u root -p", " -h db")),
        ("mysqldump -uroot -p{s} shop", ("mysqldump -uroot -p", " shop")),
        ("mysql --password={s} shop", ("mysql --password=", " shop")),
        ("sshpass -p{s} ssh host", ("sshpass -p", " ssh host")),
        ("curl -ualice:{s} https://x", ("curl -ualice:", " https://x")),
        ("curl --proxy-user proxy:{s} https://x", ("--proxy-user proxy:", " https://x")),
        ("wget --ftp-password {s} ftp://x/f", ("wget --ftp-password ", " ftp://x/f")),
        ("htpasswd -bc /etc/htpasswd alice {s}", ("htpasswd -bc /etc/htpasswd alice ",)),
        ("ldapwhoami -x -D cn=a -w {s}", ("ldapwhoami -x -D cn=a -w ",)),
        ('psql "host=db user=app password={s} dbname=x"', ('psql "host=db user=app password=', " dbname=x")),
        ("psql 'postgresql://app:{s}@db/x'", ("psql 'postgresql://app:", "@db/x'")),
        ("redis-cli --user u --pass {s} ping", ("redis-cli --user u --pass ", " ping")),
        ("mongosh --password {s}", ("mongosh --password ",)),
        ("openssl pkcs12 -export -password pass:{s} -out a.p12", ("-password ", " -out a.p12")),
        ("RSYNC_PASSWORD={s} rsync -a rsync://u@h/m .", ("RSYNC_PASSWORD=", " rsync -a rsync://u@h/m .")),
        (
            "keytool -genkey -storepass {s} -keystore k.jks",
            ("keytool -genkey -storepass ", " -keystore k.jks"),
        ),
        ("mount -t cifs //h/s /mnt -o username=a,password={s}", ("-o username=a,password=",)),
        ("podman login -u me -p {s} quay.io", ("podman login -u me -p ", " quay.io")),
        ("helm repo add r https://x --username a --password {s}", ("--username a --password ",)),
        ("influx -username a -password {s}", ("influx -username a -password ",)),
    ],
    "files": [
        (
            "machine api.example.com login alice password {s}",
            ("machine api.example.com login alice password ",),
        ),
        ("machine h\n  login alice\n  password {s}\n", ("machine h\n  login alice\n  password ",)),
        (
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: k\nPublic-Lines: 2\nAAAAC3Nz\nAAAAI\n"
            "Private-Lines: 1\n{s}\nPrivate-MAC: 0123abcd{s}\n",
            ("PuTTY-User-Key-File-3: ssh-ed25519", "Public-Lines: 2\nAAAAC3Nz", "Private-Lines:"),
        ),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{s}\n-----END OPENSSH PRIVATE KEY-----",
            ("-----END OPENSSH",),
        ),
    ],
}

CASES = [
    pytest.param(template, keep, id=f"{family}-{index}")
    for family, table in FORMS.items()
    for index, (template, keep) in enumerate(table)
]


@pytest.mark.parametrize(("template", "keep"), CASES)
def test_form_is_redacted_and_keeps_what_ran(template: str, keep: tuple[str, ...]) -> None:
    secret = fresh_secret()
    text = template.replace("{s}", secret)
    redacted = redact_text(text)
    assert secret not in redacted
    assert REDACTED in redacted
    for part in keep:
        assert part in redacted, f"{part!r} was lost from {redacted!r}"
    assert redact_text(redacted) == redacted


LOOK_ALIKES = [
    "ldapsearch -W -x -b dc=x",
    "zip -r backup.zip dir; unzip -l backup.zip",
    "redis-cli -h cache ping; mongo --port 27017",
    "openssl req -new -keyout k.pem -passout env:KEYPASS -out r.csr",
    "openssl enc -d -kfile keyfile -in f.enc",
    "smbclient -L //fs -N; smbclient -U alice //fs/share",
    "htpasswd -c /etc/nginx/htpasswd alice",
    "curl -b cookies.txt -c cookies.txt https://x",
    "aws configure set region eu-west-1; aws configure set output json",
    "docker pull nginx:1.25@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "git clone git@github.com:org/repo.git; ssh deploy@host; scp f user@host:/tmp",
    "echo hello | sudo tee /etc/motd; sudo -u root ls",
    "CREATE USER app WITH LOGIN; SELECT password FROM users WHERE id = 1",
    "java -Dfile.encoding=UTF-8 -Duser.timezone=UTC -jar a.jar",
    "SORT_BUFFER=10 PATH=/usr/bin ./x",
    "https://git@github.com/x and https://first.last@host/",
    "docker run -p 6379:6379 redis; 7z x a.7z",
    "the password policy requires twelve characters",
    "echo $SSHPASS; read -s DB_PASSWORD",
    "chpasswd --help",
    # look-alikes of the program-aware rules: same flags for other programs, metadata options
    "sqlcmd -S db -E -Q 'select 1'; mkdir -p /srv/x; ssh -p 2222 h",
    "snmpd -c /etc/snmp/snmpd.conf; snmptrapd -c /etc/snmp/trap.conf",
    "ipmitool -I lanplus -H bmc -U admin -E chassis status",
    "useradd -m -s /bin/bash alice; usermod -aG docker bob",
    "rabbitmqctl list_users; rabbitmqctl add_vhost prod; rabbitmqctl delete_user bob",
    "vault login -method=oidc; vault login -; bw unlock --passwordenv BW_PW",
    "nmcli dev wifi connect HomeNet; nmcli con show home",
    "net user alice /delete; net user; net use Z: /delete",
    "lftp -u deploy ftp.example.com; open -a Safari",
    "docker run --user 1000:1000 img; docker exec --user www-data:www-data c ls",
    "python train.py --max-tokens 100 --num-tokens 5 --token-type jwt --password-file /run/pw",
    "gpg --passphrase-fd 0 --batch -d f; tool --auth-method oidc --key-id abc --auth-type basic",
    "echo hello | grep passwd /etc/nsswitch.conf; cat /etc/passwd | wc -l",
    "echo done | tee log; printf '%s\\n' a | sort",
    "git commit -m 'rotate the community string'; git config user.name alice",
    "npm config set registry https://registry.example.com; poetry config virtualenvs.in-project true",
    "openssl passwd -help; wpa_passphrase -h",
    "sqlplus / as sysdba; sqlplus -s /nolog",
    "cat <<EOF > notes.txt\nhello world\nEOF\n(cd /tmp; ls) | grep x; find . -exec rm {} \\;",
    # look-alikes of the admin command rows
    "net use; net use \\\\fs\\share /delete; net use Z: /delete /y; net view \\\\fs",
    "net use \\\\fs\\share * /user:alice; net use \\\\fs\\share /user:alice /persistent:yes",
    "smbclient -L //fs -N; smbclient //fs/share -U alice -c 'get f'; smbclient //fs/share -N -c ls",
    "mongodump --db x --out /backup; mongoexport -d db -c coll -o out.json",
    "plink -ssh user@host -P 22 uptime; pscp -P 2222 f user@host:/tmp",
    "wmic os get caption; wmic /node:h /user:alice process list; winrs -r:host ipconfig",
    "sc query svc; sc config svc start= auto; netdom join pc /domain:x /userd:a",
    "certutil -hashfile f SHA256; certutil -urlcache -split -f http://x/f f",
    "mc alias list; mc cp a b; mc alias set minio http://h:9000",
    "ConvertTo-SecureString $enc; $p = ConvertTo-SecureString $plain -AsPlainText -Force",
    '$p = ConvertTo-SecureString "$env:DB_PW" -AsPlainText -Force',
    "enum4linux -a host; smbmap -H host; curl --oauth2-bearer-file f https://x",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alike_left_alone(text: str) -> None:
    assert redact_text(text) == text


EMPTY = [
    "STRIPE_KEY= ./run",
    "--password ''",
    "htpasswd -b f alice ''",
    "CREATE USER app WITH PASSWORD ''",
    "curl -u alice: https://x",
    "machine h login alice password ''",
]


@pytest.mark.parametrize("text", EMPTY)
def test_an_empty_value_is_never_shown_as_redacted(text: str) -> None:
    assert REDACTED not in redact_text(text)


def test_structures_keep_empty_values_and_the_names_that_ran() -> None:
    secret = fresh_secret()
    args = {
        "command": "printenv",
        "env": {"STRIPE_KEY": secret, "SSHPASS": secret, "EMPTY_PASSWORD": "", "PATH": "/bin"},
        "cwd": f"/srv/app?token={secret}",
        "host": f"admin:{secret}@db1",
    }
    redacted = redact(args)
    assert secret not in repr(redacted)
    assert redacted == {
        "command": "printenv",
        "env": {"STRIPE_KEY": REDACTED, "SSHPASS": REDACTED, "EMPTY_PASSWORD": "", "PATH": "/bin"},
        "cwd": f"/srv/app?token={REDACTED}",
        "host": f"admin:{REDACTED}@db1",
    }


def test_sudo_s_stdin_loses_only_its_first_line() -> None:
    secret = fresh_secret()
    redacted = redact({"command": "sudo -S -p '' apt-get install -y jq", "stdin": f"{secret}\nY\n"})
    assert redacted == {"command": "sudo -S -p '' apt-get install -y jq", "stdin": f"{REDACTED}\nY\n"}


def test_chpasswd_stdin_loses_every_secret_and_keeps_the_users() -> None:
    first, second = fresh_secret(), fresh_secret()
    redacted = redact({"command": "chpasswd", "stdin": f"alice:{first}\nbob:{second}\n"})
    assert redacted == {"command": "chpasswd", "stdin": f"alice:{REDACTED}\nbob:{REDACTED}\n"}


def test_passwd_stdin_loses_every_line() -> None:
    first, second = fresh_secret(), fresh_secret()
    redacted = redact({"command": "sudo passwd alice", "stdin": f"{first}\n{second}\n"})
    assert redacted == {"command": "sudo passwd alice", "stdin": f"{REDACTED}\n{REDACTED}\n"}


@pytest.mark.parametrize(
    "command", ["kinit admin", "gh auth login --with-token", "cryptsetup open /dev/sdb1 x -"]
)
def test_stdin_of_a_program_reading_a_secret_loses_its_first_line(command: str) -> None:
    secret = fresh_secret()
    assert redact({"command": command, "stdin": f"{secret}\nnext\n"}) == {
        "command": command,
        "stdin": f"{REDACTED}\nnext\n",
    }


def test_stdin_of_an_ordinary_program_keeps_its_text() -> None:
    assert redact({"command": "cat", "stdin": "alice:not-a-secret\n"}) == {
        "command": "cat",
        "stdin": "alice:not-a-secret\n",
    }


@pytest.mark.parametrize("typed", ["hunter2\r", "correct horse battery staple\n", "x"])
def test_session_input_with_echo_off_is_redacted_whole(typed: str) -> None:
    assert redact_session_input(typed, echo=False) == REDACTED
    assert redact_session_input("", echo=False) == ""


def test_session_input_with_echo_on_is_only_scanned() -> None:
    # An agent that prints "Password:" itself cannot hide the command it types next.
    assert redact_session_input("rm -rf /srv/data\r", echo=True) == "rm -rf /srv/data\r"
    secret = fresh_secret()
    assert redact_session_input(f"export API_TOKEN={secret}\r", echo=True) == f"export API_TOKEN={REDACTED}\r"


QUARTER_MEBIBYTE = 1 << 18

# Each new rule's trigger repeated over a quarter mebibyte: every rule must stay linear.
ADVERSARIAL = [
    "redis-cli -a ",
    "htpasswd -b ",
    "echo a a a a a a a a a a a a a a a a a | ",
    "echo x | sudo ",
    "PASSWORD ",
    "IDENTIFIED BY ",
    "machine login ",
    "\npassword ",
    "a:b@",
    "https://",
    "Private-Lines: 1\n",
    "-Da.password=",
    "Cookie: ",
    "hooks.slack.com/services/",
    "chpasswd <<EOF\n",
    "chpasswd <<< ",
    "configure set ",
    "smbclient -U a%",
    "openssl -pass pass:",
    "STRIPE_KEY= ",
    "/token=",
    "sqlcmd -P ",
    "ipmitool user set password ",
    "rabbitmqctl add_user ",
    "nmcli password ",
    "echo x | passwd ",
    "--community ",
    "bash -c 'sqlcmd ",
    "sqlplus a/b@c ",
    "net user a ",
    "passwd <<< ",
]


# A quarter MiB of each trigger: linear redaction takes about a second; a quadratic rule
# (a backtracking pattern, a rescan per match) would need on the order of 10**10 steps, far
# past the timeout. The megabyte inputs of tests/governance/test_redaction.py cover the
# generic rules at full size.
@pytest.mark.timeout(15)
@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_quarter_megabyte_of_a_trigger_stays_linear(unit: str) -> None:
    text = unit * (QUARTER_MEBIBYTE // len(unit))
    once = redact_text(text)
    assert isinstance(once, str)
    assert redact_text(once) == once


# The pre-check that skips secret-free text must never skip a text a rule would change.
EVERY_TEXT = (
    [case.values[0] for case in ALL_CASES]
    + FAMILY_LOOK_ALIKES
    + LOOK_ALIKES
    + [template.replace("{s}", "S3cr3tValue0123456") for table in FORMS.values() for template, _keep in table]
)


@pytest.mark.parametrize("text", EVERY_TEXT)
def test_the_pre_check_skips_no_text_a_rule_changes(text: str) -> None:
    assert redact_text(text) == redact_text(scrub_all_rules(text))
    if scrub_all_rules(text) != text:
        assert redact_text(text) != text


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=20).map("".join))
def test_the_pre_check_agrees_with_the_rules(text: str) -> None:
    if scrub_all_rules(text) != text:
        assert redact_text(text) != text
