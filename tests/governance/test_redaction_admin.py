"""Passwords of common admin commands given as a positional or an option, with a fresh secret
each run: Windows shares (``net use``), smbclient's service password, the MongoDB tools,
PuTTY's ``-pw``, WinRM/WMI/``sc``/``netdom``/``certutil``, SMB enumeration tools,
PowerShell's ``ConvertTo-SecureString -AsPlainText``, MinIO's ``mc alias set`` and bearer
options; and the forms that already were (MySQL, curl, wget, htpasswd, LDAP, libpq
connection strings, redis-cli, mongosh, openssl, ``RSYNC_PASSWORD``...), kept as a table.
Each keeps what ran; their look-alikes pass untouched; every trigger stays linear.
"""

from __future__ import annotations

import pytest

from relay_shell.governance.redaction import REDACTED, redact_text, scrub_all_rules
from tests.governance.test_redaction_forms import fresh_secret

# (template, parts that must survive)
ADDED: list[tuple[str, tuple[str, ...]]] = [
    ("net use \\\\fs\\share {s} /user:alice", ("net use \\\\fs\\share ", " /user:alice")),
    ("net use \\\\fs\\share /user:alice {s}", ("net use \\\\fs\\share /user:alice ",)),
    ("net use Z: \\\\fs\\data {s} /user:CORP\\alice /persistent:no", ("Z: \\\\fs\\data ", "/persistent:no")),
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
    ("wmic /node:h /user:alice /PASSWORD:{s} os get caption", ("/user:alice /PASSWORD:", " os get caption")),
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
]

EXISTING: list[tuple[str, tuple[str, ...]]] = [
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
    ("keytool -genkey -storepass {s} -keystore k.jks", ("keytool -genkey -storepass ", " -keystore k.jks")),
    ("mount -t cifs //h/s /mnt -o username=a,password={s}", ("-o username=a,password=",)),
    ("podman login -u me -p {s} quay.io", ("podman login -u me -p ", " quay.io")),
    ("helm repo add r https://x --username a --password {s}", ("--username a --password ",)),
    ("influx -username a -password {s}", ("influx -username a -password ",)),
]

CASES = [
    pytest.param(template, keep, id=f"{kind}-{index}")
    for kind, table in (("added", ADDED), ("existing", EXISTING))
    for index, (template, keep) in enumerate(table)
]


@pytest.mark.parametrize(("template", "keep"), CASES)
def test_admin_password_is_redacted_and_keeps_what_ran(template: str, keep: tuple[str, ...]) -> None:
    secret = fresh_secret()
    text = template.replace("{s}", secret)
    redacted = redact_text(text)
    assert secret not in redacted
    assert REDACTED in redacted
    for part in keep:
        assert part in redacted, f"{part!r} was lost from {redacted!r}"
    assert redact_text(redacted) == redacted
    assert redact_text(scrub_all_rules(text)) == redacted  # the pre-check never skips it


LOOK_ALIKES = [
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


ADVERSARIAL = [
    "net use \\\\h\\s ",
    "net use /user:a ",
    "smbclient //h/s ",
    "sc password= ",
    "wmic /password:",
    "mongodump -p ",
    "plink -pw ",
    "ConvertTo-SecureString -AsPlainText ",
    "mc alias set ",
]


# 64 KiB of each trigger: linear redaction takes a fraction of a second; a quadratic rule
# over its thousands of words would take minutes, far past the timeout.
TRIGGER_BYTES = 1 << 16


@pytest.mark.timeout(10)
@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_a_trigger_repeated_stays_linear(unit: str) -> None:
    text = unit * (TRIGGER_BYTES // len(unit))
    once = redact_text(text)
    assert redact_text(once) == once
