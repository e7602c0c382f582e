"""Secret redaction of audited arguments (SPEC §7.1).

One table per rule family (input -> exact output), a table of look-alikes that must pass
through untouched, adversarial megabyte inputs (no catastrophic backtracking), and
Hypothesis properties: never raises, idempotent, no change without secret-ish content,
no leak of a planted secret.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from relay_shell.governance.redaction import REDACTED, redact, redact_text

R = REDACTED
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

URL_CREDENTIALS = [
    ("https://user:pass@host", f"https://user:{R}@host"),
    (
        "git clone https://alice:s3cr3t@git.example.com/o/r.git",
        f"git clone https://alice:{R}@git.example.com/o/r.git",
    ),
    ("redis://:hunter2@cache:6379/0", f"redis://:{R}@cache:6379/0"),
    (
        "postgresql+psycopg://app:p%40ss@db/app?sslmode=require",
        f"postgresql+psycopg://app:{R}@db/app?sslmode=require",
    ),
    ("amqp://u:p@ss@broker", f"amqp://u:{R}@broker"),
    ("see https://a:b@x and ftp://c:d@y", f"see https://a:{R}@x and ftp://c:{R}@y"),
]

AUTHORIZATION_HEADERS = [
    ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {R}"),
    ("curl -H 'Authorization: Bearer abc.def' https://x", f"curl -H 'Authorization: Bearer {R}' https://x"),
    ('curl -H "Authorization: token abc" https://x', f'curl -H "Authorization: token {R}" https://x'),
    ('{"Authorization": "Basic dXNlcjpwYXNz"}', f'{{"Authorization": "Basic {R}"}}'),
    ("{'authorization': 'raw-secret'}", f"{{'authorization': '{R}'}}"),
    ("Proxy-Authorization: Basic Zm9vOmJhcg==\r\nHost: x", f"Proxy-Authorization: Basic {R}\r\nHost: x"),
    ('Authorization: Digest username="u", response="6629f"', f"Authorization: Digest {R}"),
    ("X-Authorization: opaque", f"X-Authorization: {R}"),
    ("authorization=abc123", f"authorization={R}"),
    ("Authorization:\nnext line", "Authorization:\nnext line"),
]

BEARER_TOKENS = [
    ("Bearer abcdef123456", f"Bearer {R}"),
    ("bearer eyJ0eXAi.x.y", f"bearer {R}"),
    ("token: Bearer abcdefgh1234", f"token: Bearer {R}"),
    ("Bearer " + "Q" * 24, f"Bearer {R}"),
    ("Bearer Bearer x123456789", f"Bearer Bearer {R}"),
    ("Bearer abc*def!ghi", f"Bearer {R}"),
    ('-H "authorization:Bearer x" Bearer 0123456789.', f'-H "authorization:Bearer {R}" Bearer {R}'),
]

KEY_VALUE_PAIRS = [
    ("password=hunter2", f"password={R}"),
    ("DB_PASSWORD=hunter2 ./run", f"DB_PASSWORD={R} ./run"),
    ("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", f"export AWS_SECRET_ACCESS_KEY={R}"),
    ("MYSQL_PWD=x mysql -u root", f"MYSQL_PWD={R} mysql -u root"),
    ("GITHUB_TOKEN='a b c' gh pr list", f"GITHUB_TOKEN='{R}' gh pr list"),
    ('API_KEY="k\\"ey" && next', f'API_KEY="{R}" && next'),
    ('{"password": "a\\"b", "user": "x"}', f'{{"password": "{R}", "user": "x"}}'),
    ('{"apiKey":"abc","id":7}', f'{{"apiKey":"{R}","id":7}}'),
    ('{"token": 12345}', f'{{"token": {R}}}'),
    ("db:\n  password: hunter2\n  user: app", f"db:\n  password: {R}\n  user: app"),
    ("spring.datasource.password = s3cr3t", f"spring.datasource.password = {R}"),
    ("curl 'https://x/api?user=a&token=abc&page=2'", f"curl 'https://x/api?user=a&token={R}&page=2'"),
    ("Server=db;User Id=sa;Password=P@ss;Database=x", f"Server=db;User Id=sa;Password={R};Database=x"),
    ("docker run -e POSTGRES_PASSWORD=pw img", f"docker run -e POSTGRES_PASSWORD={R} img"),
    ("x-api-key: k123", f"x-api-key: {R}"),
    ("client_secret := 'abc'", f"client_secret := '{R}'"),
    ("'password' => 'x'", f"'password' => '{R}'"),
    ("http GET x token==abc", f"http GET x token=={R}"),
    ("credentials: abc", f"credentials: {R}"),
    ("pass=abc", f"pass={R}"),
    ("a=password=x", f"a=password={R}"),
    ("$env:API_TOKEN = 'x'", f"$env:API_TOKEN = '{R}'"),
    ("password='unclosed and more", f"password='{R}"),
    ("password=", "password="),
    ('password=""', 'password=""'),
]

CLI_FLAGS = [
    ("--password x", f"--password {R}"),
    ("--password=x", f"--password={R}"),
    ("--passwd 'a b'", f"--passwd '{R}'"),
    ('--token "t"', f'--token "{R}"'),
    ("--api-key k --api_key k --apikey k", f"--api-key {R} --api_key {R} --apikey {R}"),
    ("--secret s", f"--secret {R}"),
    ("--client-secret=s --db-password p", f"--client-secret={R} --db-password {R}"),
    ("--access-token abc --passphrase p", f"--access-token {R} --passphrase {R}"),
    ("--PASSWORD X", f"--PASSWORD {R}"),
    (
        "keytool -storepass a -keypass b -srcstorepass c",
        f"keytool -storepass {R} -keypass {R} -srcstorepass {R}",
    ),
    ("tool -password p -token t", f"tool -password {R} -token {R}"),
    ("--password=-starts-with-dash", f"--password={R}"),
    ("mysql --password --user root", "mysql --password --user root"),
]

COMMAND_OPTIONS = [
    ("mysql -uroot -psecret db", f"mysql -uroot -p{R} db"),
    ("mysqldump -p'a b' db > x.sql", f"mysqldump -p'{R}' db > x.sql"),
    ('mariadb -h h "-ps3cret"', f'mariadb -h h "-p{R}"'),
    ("/usr/bin/mysql -pX; mkdir -p /srv/x", f"/usr/bin/mysql -p{R}; mkdir -p /srv/x"),
    ("docker exec db mysql -uroot -ppw -e 'select 1'", f"docker exec db mysql -uroot -p{R} -e 'select 1'"),
    ("mysqladmin -pX ping", f"mysqladmin -p{R} ping"),
    ("sshpass -p secret ssh -p 2222 host", f"sshpass -p {R} ssh -p 2222 host"),
    ("sshpass -psecret ssh host", f"sshpass -p{R} ssh host"),
    ("sshpass -v -p 'a b' scp f h:", f"sshpass -v -p '{R}' scp f h:"),
    ("docker login -u me -p s3cret registry.io", f"docker login -u me -p {R} registry.io"),
    ("podman login -p pw quay.io", f"podman login -p {R} quay.io"),
    ("curl -u admin:hunter2 https://x", f"curl -u admin:{R} https://x"),
    ("curl -sS --user=admin:hunter2 https://x", f"curl -sS --user=admin:{R} https://x"),
    ("curl -u 'admin:a b' https://x", f"curl -u 'admin:{R}' https://x"),
    ("curl -x proxy -U pu:pp https://x", f"curl -x proxy -U pu:{R} https://x"),
]

PRIVATE_KEYS = [
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        f"-----BEGIN RSA PRIVATE KEY-----{R}-----END RSA PRIVATE KEY-----",
    ),
    (
        "key: '-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaA==\\n-----END OPENSSH PRIVATE KEY-----\\n'",
        f"key: '-----BEGIN OPENSSH PRIVATE KEY-----{R}-----END OPENSSH PRIVATE KEY-----\\n'",
    ),
    (
        "a -----BEGIN PRIVATE KEY-----x-----END PRIVATE KEY----- b -----BEGIN EC PRIVATE KEY-----y"
        "-----END EC PRIVATE KEY----- c",
        f"a -----BEGIN PRIVATE KEY-----{R}-----END PRIVATE KEY----- b -----BEGIN EC PRIVATE KEY-----{R}"
        "-----END EC PRIVATE KEY----- c",
    ),
    (
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nabc\n-----END ENCRYPTED PRIVATE KEY-----",
        f"-----BEGIN ENCRYPTED PRIVATE KEY-----{R}-----END ENCRYPTED PRIVATE KEY-----",
    ),
    (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQ\n-----END PGP PRIVATE KEY BLOCK-----",
        f"-----BEGIN PGP PRIVATE KEY BLOCK-----{R}-----END PGP PRIVATE KEY BLOCK-----",
    ),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE (truncated) password=x", f"-----BEGIN RSA PRIVATE KEY-----{R}"),
]

TOKEN_SHAPES = [
    (f"echo {GITHUB_TOKEN}", f"echo ghp_{R}"),
    (
        "gho_" + "x" * 36 + " ghu_" + "y" * 36 + " ghs_" + "z" * 36 + " ghr_" + "w" * 36,
        f"gho_{R} ghu_{R} ghs_{R} ghr_{R}",
    ),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", f"github_pat_{R}"),
    ("glpat-" + "a1B2c3D4e5F6g7H8i9J0", f"glpat-{R}"),
    ("xoxb-1234567890-abcdefghij", f"xoxb-{R}"),
    ("xoxp-12-34-56-abcdef", f"xoxp-{R}"),
    ("AKIAIOSFODNN7EXAMPLE", f"AKIA{R}"),
    ("id=ASIAY34FZKBOKMUTVV7A,", f"id=ASIA{R},"),
    ("sk-" + "a1" * 24, f"sk-{R}"),
    ("sk-proj-" + "Ab3" * 20, f"sk-proj-{R}"),
    ("sk-ant-api03-" + "x9" * 40, f"sk-ant-{R}"),
    ("AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", f"AIza{R}"),
    ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", f"sk_live_{R}"),
    (
        "rk_live_abcdefghij12 pk_live_0123456789ab sk_test_abcdefghij12",
        f"rk_live_{R} pk_live_{R} sk_test_{R}",
    ),
    ("npm_" + "a1B2" * 9, f"npm_{R}"),
    ("pypi-AgEIcHlwaS5vcmc" + "Q" * 60, f"pypi-{R}"),
    ("hf_" + "abcdefghij" * 3 + "klmn", f"hf_{R}"),
    (f"jwt {JWT}.", f"jwt eyJ{R}."),
]

LOOK_ALIKES = [
    "mkdir -p /srv/x",
    "ls -p",
    "ssh -p 2222 admin@host",
    "docker run -p 8080:80 nginx",
    "sshpass -f /run/pw ssh -p 22 host",
    "git log --author alice --author=bob",
    "password_policy.md",
    "vim tokenizer.py; python -m tokenize x.py",
    "cat /etc/passwd",
    "passwd alice",
    "grep -ri password /etc/ssh",
    "echo $PASSWORD; read -s TOKEN",
    "https://example.com:8443/path?q=1#frag",
    "ssh://git@github.com/org/repo.git",
    "git@github.com:org/repo.git",
    "pip install sk-learn; the sk- prefix",
    "hf_hub_download eyJ AKIA1234 ghp_short",
    "ssh -o PasswordAuthentication=no -o PubkeyAuthentication=yes host",
    "PWD=/home/me OLDPWD=/tmp",
    "max_tokens=100 password_policy=strict token_url=https://idp/token password_min_length: 12",
    "--password-file /run/pw --token-file=/run/t --password-stdin",
    "psql --no-password db; ansible --ask-pass all",
    "docker run -v /etc/secret:/etc/secret:ro img",
    "git config credential.helper store",
    "curl -u alice https://x",
    "the bearer of bad news; Bearer authentication. The bearer token is short-lived",
    "ls /var/lib/mysql",
    "Authorization:",
]

FAMILIES = {
    "url_credentials": URL_CREDENTIALS,
    "authorization_headers": AUTHORIZATION_HEADERS,
    "bearer_tokens": BEARER_TOKENS,
    "key_value_pairs": KEY_VALUE_PAIRS,
    "cli_flags": CLI_FLAGS,
    "command_options": COMMAND_OPTIONS,
    "private_keys": PRIVATE_KEYS,
    "token_shapes": TOKEN_SHAPES,
}
ALL_CASES = [
    pytest.param(text, expected, id=f"{family}-{index}")
    for family, table in FAMILIES.items()
    for index, (text, expected) in enumerate(table)
]


@pytest.mark.parametrize(("text", "expected"), ALL_CASES)
def test_family_table(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(("text", "expected"), ALL_CASES)
def test_family_output_is_stable(text: str, expected: str) -> None:
    assert redact_text(expected) == expected


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alike_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_rules_that_interact_still_reach_a_fixed_point() -> None:
    # The key rule shortens the authority to the '@', which only then reads as URL
    # credentials; redact_text re-applies the rules until nothing changes.
    once = redact_text('https://user:token="x y"@host')
    assert once == f"https://user:{R}@host"
    assert redact_text(once) == once


# --- structures ----------------------------------------------------------------------------

STRUCTURES = [
    ({"password": "x", "user": "u"}, {"password": R, "user": "u"}),
    # an empty value is never shown as [REDACTED]: it would claim a secret that was not there
    (
        {"DB_PASSWORD": 5, "apiKey": None, "x-api-key": ["a"]},
        {"DB_PASSWORD": R, "apiKey": None, "x-api-key": R},
    ),
    (
        {"AWS_SECRET_ACCESS_KEY": {"nested": 1}, "GITHUB_TOKEN": ""},
        {"AWS_SECRET_ACCESS_KEY": R, "GITHUB_TOKEN": ""},
    ),
    (
        {"Authorization": "Bearer x", "auth": ("u", "p"), "private_key": b"k"},
        {"Authorization": R, "auth": R, "private_key": R},
    ),
    (
        {"credential": 1, "secret": 2, "token": 3, "pwd": 4, "passwd": 5},
        dict.fromkeys(["credential", "secret", "token", "pwd", "passwd"], R),
    ),
    (
        {
            "tokenizer": "bpe",
            "password_policy": "strict",
            "max_tokens": 9,
            "token_url": "https://x/t",
            "PWD": "/",
        },
        {
            "tokenizer": "bpe",
            "password_policy": "strict",
            "max_tokens": 9,
            "token_url": "https://x/t",
            "PWD": "/",
        },
    ),
    ({"env": {"NPM_TOKEN": "x", "PATH": "/bin"}}, {"env": {"NPM_TOKEN": R, "PATH": "/bin"}}),
    (
        {"command": "mysql -psecret", "timeout": 5.0, "merge": True},
        {"command": f"mysql -p{R}", "timeout": 5.0, "merge": True},
    ),
    ({f"key {GITHUB_TOKEN}": 1}, {f"key ghp_{R}": 1}),
    # Only the redacted key reads as private_key; judging it too keeps redact idempotent.
    ({"-----BEGIN RSA PRIVATE KEY-----policy": None}, {f"-----BEGIN RSA PRIVATE KEY-----{R}": None}),
    ({"-----BEGIN RSA PRIVATE KEY-----policy": "v"}, {f"-----BEGIN RSA PRIVATE KEY-----{R}": R}),
    (["--password", "x", "y", "--token", 7], ["--password", R, "y", "--token", R]),
    (("curl", "-u", "a:b", "https://u:p@h"), ("curl", "-u", "a:b", f"https://u:{R}@h")),
    ([{"secret": 1}, ("password=x",)], [{"secret": R}, (f"password={R}",)]),
    ({1: "password=x", (1, "token=y"): None}, {1: f"password={R}", (1, f"token={R}"): None}),
    ({"tags": {"password=x"}}, {"tags": {f"password={R}"}}),
    (42, 42),
    (None, None),
    (3.5, 3.5),
    (b"password=x", b"password=x"),
]


@pytest.mark.parametrize(("value", "expected"), STRUCTURES)
def test_structure_table(value: object, expected: object) -> None:
    assert redact(value) == expected


def test_redact_returns_new_objects_and_never_mutates() -> None:
    original = {"env": {"TOKEN": "t"}, "argv": ["--password", "p"], "args": ("password=x",)}
    snapshot = copy.deepcopy(original)
    result = redact(original)
    assert original == snapshot
    assert isinstance(result, dict)
    assert result is not original
    assert result["env"] is not original["env"]
    assert result["argv"] is not original["argv"]
    assert result == {"env": {"TOKEN": R}, "argv": ["--password", R], "args": (f"password={R}",)}


def test_deep_nesting_and_cycles_do_not_raise() -> None:
    deep: object = "password=x"
    for _ in range(500):
        deep = [deep]
    result = redact(deep)
    for _ in range(64):
        assert isinstance(result, list)
        result = result[0]
    assert result == R

    cycle: list[object] = ["token=t"]
    cycle.append(cycle)
    redacted = redact(cycle)
    assert isinstance(redacted, list)
    assert redacted[0] == f"token={R}"


# --- adversarial inputs: no catastrophic backtracking -----------------------------------------

MEBIBYTE = 1 << 20


def _repeat(unit: str, replaced: str | None = None) -> str:
    """About a mebibyte of ``unit``, or as many copies of ``replaced`` as there were units."""
    return (unit if replaced is None else replaced) * (MEBIBYTE // len(unit))


def _unchanged(text: str) -> tuple[str, str]:
    return text, text


# Built lazily (name -> (input, expected output)) so the megabytes exist one test at a time.
ADVERSARIAL: dict[str, Callable[[], tuple[str, str]]] = {
    "password-run": lambda: (_repeat("password="), f"password={R}"),
    "letters": lambda: _unchanged("a" * MEBIBYTE),
    "jwt-dots": lambda: _unchanged("eyJ" + "a." * (MEBIBYTE // 2)),
    "begin-without-end": lambda: (
        _repeat("-----BEGIN RSA PRIVATE KEY-----"),
        f"-----BEGIN RSA PRIVATE KEY-----{R}",
    ),
    "begin-then-body": lambda: (
        "-----BEGIN RSA PRIVATE KEY-----\n" + "A" * MEBIBYTE,
        f"-----BEGIN RSA PRIVATE KEY-----{R}",
    ),
    "short-keys": lambda: _unchanged(_repeat("a=")),
    "quoted-headers": lambda: (
        _repeat("'Authorization: x' "),
        _repeat("'Authorization: x' ", f"'Authorization: {R}' "),
    ),
    "headers": lambda: (_repeat("Authorization:"), f"Authorization:{R}"),
    "url-schemes": lambda: _unchanged(_repeat("a://")),
    "url-credentials": lambda: (_repeat("https://u:p@"), _repeat("https://u:p@", f"https://u:{R}@")),
    "url-without-at": lambda: _unchanged("https://u:" + "p" * MEBIBYTE),
    "bearers": lambda: _unchanged(_repeat("bearer ")),
    "flag-like": lambda: _unchanged(_repeat("--a-a-a-a-a-a-a-a-a-a-")),
    "dashes": lambda: _unchanged("-" * MEBIBYTE),
    "mysql": lambda: (_repeat("mysql -pa "), _repeat("mysql -pa ", f"mysql -p{R} ")),
    "curl": lambda: (_repeat("curl -u a:b "), _repeat("curl -u a:b ", f"curl -u a:{R} ")),
    "sk-prefixes": lambda: _unchanged(_repeat("sk-")),
    "sk-letters": lambda: _unchanged("sk-" + "a" * MEBIBYTE),
    "backslashes": lambda: ('password="' + "\\" * MEBIBYTE, f'password="{R}'),
    "single-quotes": lambda: _unchanged("'" * MEBIBYTE),
    "long-key": lambda: _unchanged("x" * 127 + "=" + "y" * MEBIBYTE),
    "newlines": lambda: _unchanged("\n" * MEBIBYTE),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_megabyte_input(name: str) -> None:
    text, expected = ADVERSARIAL[name]()
    assert redact_text(text) == expected


# --- properties ----------------------------------------------------------------------------

FRAGMENTS = [
    "password", "PASSWORD", "DB_", "token", "api_key", "x-api-key", "auth", "Authorization",
    "Proxy-Authorization", "Bearer ", "Basic ", "=", ":", ": ", "==", "=>", ":=", '"', "'", "\\",
    " ", "\t", "\n", "://", "https", "@", "/", "?", "&", ";", "|", "(", ")", "{", "}", "[", "]",
    R, "-", "--", "-p", "--password", "--token", "-u", "mysql", "sshpass", "curl", "docker login",
    "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "ghp_", "sk-", "sk-ant-",
    "AKIA", "AIza", "eyJ", ".", "hf_", "npm_", "pypi-", "xoxb-", "glpat-", "sk_live_", "abc",
    "1234567890", "ABCDEFGHIJKLMNOP", "a" * 40, "user", "secret", "pwd", "PWD", "pass", "_",
    "policy", ",",
]  # fmt: skip
secretish_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=24).map(
    "".join
)
secretish_structures = st.recursive(
    st.one_of(secretish_text, st.integers(), st.none(), st.booleans()),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(secretish_text, children, max_size=4),
    ),
    max_leaves=20,
)
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(st.text())
def test_never_raises_on_arbitrary_text(text: str) -> None:
    assert isinstance(redact_text(text), str)


@PROPERTY_SETTINGS
@given(secretish_structures)
def test_never_raises_and_is_idempotent_on_structures(value: object) -> None:
    once = redact(value)
    assert redact(once) == once


@PROPERTY_SETTINGS
@given(secretish_text)
def test_idempotent_on_secretish_text(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


# Words that make a name secret-ish (names.py): text built without them must pass unchanged.
TRIGGERS = ("pass", "pw", "secret", "token", "key", "cred", "auth", "bearer", "cookie", "sig", "sas")
safe_word = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=12).filter(
    lambda word: not any(trigger in word for trigger in TRIGGERS)
)
safe_text = st.lists(
    st.tuples(safe_word, st.sampled_from([" ", "  ", ", ", ". ", "\n", "! ", "? ", " (", ") "])), max_size=30
).map(lambda pairs: "".join(word + separator for word, separator in pairs))


@PROPERTY_SETTINGS
@given(safe_text)
def test_text_without_secretish_content_is_unchanged(text: str) -> None:
    assert redact_text(text) == text


@PROPERTY_SETTINGS
@given(
    st.dictionaries(
        safe_word, st.one_of(safe_text, st.integers(), st.lists(safe_text, max_size=3)), max_size=5
    )
)
def test_structure_without_secretish_content_is_unchanged(value: dict[str, object]) -> None:
    assert redact(value) == value


LEAK_TEMPLATES = [
    "{key}={secret}",
    "export {key}='{secret}'",
    '{{"{key}": "{secret}"}}',
    "{key}: {secret}",
    "--password {secret}",
    "--api-key={secret}",
    "https://user:{secret}@host/x",
    "Authorization: Basic {secret}",
    "curl -H 'Authorization: {secret}' x",
    "Bearer {secret}",
    "mysql -u root -p{secret} db",
    "sshpass -p {secret} ssh host",
    "curl -u admin:{secret} https://x",
]
SECRET_KEYS = [
    "password",
    "DB_PASSWORD",
    "api_key",
    "GITHUB_TOKEN",
    "client_secret",
    "MYSQL_PWD",
    "x-api-key",
]
# Characters a secret can carry unescaped in every template (no '/', '@' or quotes).
planted_secret = st.text(
    alphabet=string.ascii_letters + string.digits + "!%*+._~", min_size=12, max_size=40
).filter(lambda secret: any(char.isdigit() for char in secret))


@PROPERTY_SETTINGS
@given(st.sampled_from(LEAK_TEMPLATES), st.sampled_from(SECRET_KEYS), planted_secret)
def test_planted_secret_never_survives(template: str, key: str, secret: str) -> None:
    text = template.format(key=key, secret=secret)
    assume(secret not in template.format(key=key, secret=""))
    assert secret not in redact_text(text)


def test_remembered_clean_texts_never_hide_a_secret() -> None:
    # A clean text is remembered so the next call does not scan it again; a text with a secret
    # is scanned every time, and a clean text that differs by one character is scanned too.
    clean = "relaytest@127.0.0.1:2222"
    secret = "mysql -u root -phunter2secret db"
    for _ in range(3):
        assert redact_text(clean) == clean
        assert "hunter2secret" not in redact_text(secret)
        assert REDACTED in redact_text(secret)
    near = "curl -u admin:s3cr3tvalue https://relaytest@127.0.0.1:2222"
    assert "s3cr3tvalue" not in redact_text(near)
    for index in range(5000):  # more than the memory holds: it is emptied, results are the same
        assert redact_text(f"plain text {index}") == f"plain text {index}"
    assert "hunter2secret" not in redact_text(secret)
    assert redact_text(clean) == clean
