"""DSN parsing and redaction: aliases, encodings, TLS options, ODBC, and no password in any message."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dbaasctl.dbms.dsn import Dsn, DsnError, ensure_compatible
from dbaasctl.dbms.dsn_parse import parse_dsn
from dbaasctl.redaction import redact

NASTY_PASSWORDS = [
    "p@ss:w/o%rd;{}",
    "a@b@c",
    "x:y:z",
    "pa/ss?wo#rd",
    "{PWD=}};",
    "ü€ 🔑 'q\"\\",
    "%41%zz%",
    "s p a c e",
]


@pytest.mark.parametrize(
    ("text", "driver", "flavor", "port"),
    [
        ("postgres://u:p@h/db", "postgres", "postgres", 5432),
        ("postgresql://u:p@h/db", "postgres", "postgres", 5432),
        ("pg://u:p@h/db", "postgres", "postgres", 5432),
        ("PGSQL://u:p@h/db", "postgres", "postgres", 5432),
        ("mysql://u:p@h/db", "mysql", "mysql", 3306),
        ("mariadb://u:p@h/db", "mysql", "mariadb", 3306),
        ("maria://u:p@h/db", "mysql", "mariadb", 3306),
        ("sqlserver://u:p@h/db", "sqlserver", "sqlserver", 1433),
        ("mssql://u:p@h/db", "sqlserver", "sqlserver", 1433),
        ("ms://u:p@h/db", "sqlserver", "sqlserver", 1433),
    ],
)
def test_scheme_aliases(text: str, driver: str, flavor: str, port: int) -> None:
    dsn = parse_dsn(text)
    assert (dsn.driver, dsn.flavor, dsn.port) == (driver, flavor, port)
    assert (dsn.host, dsn.user, dsn.password, dsn.database) == ("h", "u", "p", "db")
    assert dsn.odbc is None


def test_full_url_with_tls_options() -> None:
    dsn = parse_dsn(
        "postgres://app%40corp:s%3Ac%2Fr%40t@db.example:6432/orders"
        "?sslmode=verify-full&sslrootcert=/etc/ca.pem&sslcert=/c.pem&sslkey=/k.pem&connect_timeout=5"
    )
    assert dsn.user == "app@corp"
    assert dsn.password == "s:c/r@t"
    assert (dsn.host, dsn.port, dsn.database) == ("db.example", 6432, "orders")
    assert dict(dsn.options) == {
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ca.pem",
        "sslcert": "/c.pem",
        "sslkey": "/k.pem",
        "connect_timeout": "5",
    }
    my = parse_dsn(
        "mariadb://root:pw@10.0.0.1:3307/mysql?ssl-ca=/ca&ssl-cert=/c&ssl-key=/k&ssl-mode=VERIFY_IDENTITY"
    )
    assert dict(my.options) == {
        "ssl-ca": "/ca",
        "ssl-cert": "/c",
        "ssl-key": "/k",
        "ssl-mode": "VERIFY_IDENTITY",
    }
    ms = parse_dsn("sqlserver://sa:Password&1@host:1433/master?Encrypt=yes&TrustServerCertificate=no")
    assert ms.password == "Password&1"
    assert dict(ms.options) == {"Encrypt": "yes", "TrustServerCertificate": "no"}


def test_options_are_read_only() -> None:
    dsn = parse_dsn("postgres://u:p@h/db?sslmode=require")
    with pytest.raises(TypeError):
        dsn.options["sslmode"] = "disable"  # type: ignore[index]
    assert hash(dsn) == hash(parse_dsn("postgres://u:p@h/db?sslmode=require"))
    assert dsn == parse_dsn("postgres://u:p@h/db?sslmode=require")
    assert dsn != parse_dsn("postgres://u:p@h/db?sslmode=disable")


def test_raw_at_and_colon_in_password_are_tolerated() -> None:
    dsn = parse_dsn("postgres://u:p@ss:w@h:5433/db")
    assert (dsn.user, dsn.password, dsn.host, dsn.port) == ("u", "p@ss:w", "h", 5433)


def test_other_url_shapes() -> None:
    v6 = parse_dsn("postgres://u:p@[::1]:5433/db")
    assert (v6.host, v6.port) == ("::1", 5433)
    assert "[::1]:5433" in v6.redacted()
    sock = parse_dsn("postgres://u:p@%2Fvar%2Frun%2Fpostgresql/db")
    assert sock.host == "/var/run/postgresql"
    bare = parse_dsn("postgres:///db?host=/tmp&user=me&password=qp")
    assert (bare.host, bare.user, bare.password, bare.database) == ("", "me", "qp", "db")
    assert dict(bare.options) == {"host": "/tmp"}
    no_user = parse_dsn("mysql://h")
    assert (no_user.user, no_user.password, no_user.database) == ("", "", "")
    instance = parse_dsn("sqlserver://sa:p@h/SQLEXPRESS/master")
    assert instance.database == "master"
    assert instance.options["instance"] == "SQLEXPRESS"
    q_db = parse_dsn("sqlserver://sa:p@h?database=master")
    assert q_db.database == "master"


def test_raw_odbc_connection_string() -> None:
    conn = "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;UID=u;PWD={p;w}}d};Database=postgres;sslmode=require"
    dsn = parse_dsn("odbc:" + conn)
    assert dsn.driver == "odbc"
    assert dsn.flavor == "PostgreSQL Unicode"
    assert dsn.odbc == conn
    assert (dsn.host, dsn.port, dsn.user, dsn.password, dsn.database) == (
        "127.0.0.1",
        5432,
        "u",
        "p;w}d",
        "postgres",
    )
    assert dict(dsn.options) == {"sslmode": "require"}
    assert "p;w}d" not in repr(dsn)
    assert dsn.secrets() == ("p;w}d",)
    ms = parse_dsn(
        "odbc:Driver={ODBC Driver 18 for SQL Server};Server=tcp:db.local,1444;UID=sa;Pwd=x1;Encrypt=yes"
    )
    assert (ms.host, ms.port, ms.password) == ("db.local", 1444, "x1")
    assert dict(ms.options) == {"Encrypt": "yes"}
    named = parse_dsn("ODBC:DSN=mydsn;UID=u;PWD=p")
    assert named.flavor == "mydsn"


def test_odbc_url_form_builds_a_connection_string() -> None:
    dsn = parse_dsn("odbc+PostgreSQL%20Unicode://u:p%3Bw@h:5432/postgres?sslmode=require")
    assert dsn.driver == "odbc"
    assert dsn.flavor == "PostgreSQL Unicode"
    assert (
        dsn.odbc
        == "Driver={PostgreSQL Unicode};Server=h;Port=5432;Database=postgres;UID=u;PWD={p;w};sslmode=require;"
    )
    assert parse_dsn("odbc:" + dsn.odbc).password == "p;w"
    ms = parse_dsn("odbc+ODBC%20Driver%2018%20for%20SQL%20Server://sa:x@h:1433/master?Encrypt=yes")
    assert (
        ms.odbc
        == "Driver={ODBC Driver 18 for SQL Server};Server=h,1433;Database=master;UID=sa;PWD=x;Encrypt=yes;"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("localhost:5432", "must look like scheme://"),
        ("oracle://u:p@h/db", "unknown DSN scheme 'oracle'; accepted: postgres, postgresql, pg"),
        ("postgres://u:p@h:0/db", "port must be a number from 1 to 65535"),
        ("postgres://u:p@h:65536/db", "port must be a number from 1 to 65535"),
        ("postgres://u:p@h:5x/db", "port must be a number"),
        ("postgres://u:p@[::1/db", "IPv6"),
        ("postgres://u:%C3%28@h/db", "password is not valid UTF-8"),
        ("mssql://u:p@/db", "no host"),
        ("postgres://u:p@h/a%2Fb/c", "must not contain '/'"),
        ("odbc:", "must be followed by an ODBC connection string"),
        ("odbc:Driver={x", "without its closing '}'"),
        ("odbc:Driver", "without '='"),
        ("odbc:Server=h;Port=http", "Port must be a number"),
        ("odbc+://u:p@h/db", "needs an ODBC driver name"),
    ],
)
def test_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(DsnError, match=message):
        parse_dsn(text)


def _malformed(password: str) -> list[str]:
    """DSNs, well- and ill-formed, with the password where passwords go (userinfo, PWD=, query)."""
    return [
        f"postgres://u:{password}@h/db",
        f"postgres://u:{password}@h:99999/db",
        f"postgres://u:{password}@[::1/db",
        f"mysql://u:{password}@h:port/db",
        f"mssql://u:{password}@",
        f"oracle://u:{password}@h/db",
        f"u:{password}@h/db",
        f"odbc:Driver={{x}};PWD={password}",
        f"odbc:Driver={{x}};PWD={{{password}",
        f"odbc:PWD={password};Port=notaport",
        f"postgres://u:{password}@h/db?sslpassword={password}",
    ]


def _check_no_leak(text: str, password: str) -> None:
    failure: DsnError | None = None
    try:
        dsn = parse_dsn(text)
    except DsnError as exc:
        failure = exc
    if failure is not None:
        assert password not in str(failure)
        assert password not in repr(failure)
        assert failure.__context__ is None
        assert failure.__cause__ is None
        return
    for shown in (repr(dsn), str(dsn), dsn.redacted()):
        assert password not in shown
        assert quote(password, safe="") not in shown
    assert password not in redact(f"could not connect to {text}: timeout", dsn.secrets())


@pytest.mark.parametrize("password", NASTY_PASSWORDS)
def test_password_never_in_errors_or_reprs(password: str) -> None:
    for text in _malformed(password):
        _check_no_leak(text, password)


@settings(max_examples=300, deadline=None)
@given(middle=st.text(alphabet=st.sampled_from("@:/%;{}?#=&+ aZ9ü'\"\\[]"), max_size=12))
def test_password_never_leaks_property(middle: str) -> None:
    password = f"Qv{middle}Kx"  # the markers cannot occur in any fixed message text
    for text in _malformed(password):
        _check_no_leak(text, password)


@settings(max_examples=200, deadline=None)
@given(password=st.text(min_size=1), user=st.text(min_size=1, max_size=10))
def test_percent_encoded_credentials_round_trip(password: str, user: str) -> None:
    assume("\x00" not in password)
    dsn = parse_dsn(f"mariadb://{quote(user, safe='')}:{quote(password, safe='')}@db:3306/app")
    assert (dsn.user, dsn.password) == (user, password)
    again = parse_dsn(dsn.redacted().replace("***", quote(password, safe="")))
    assert again == dsn


def test_redacted_output() -> None:
    dsn = parse_dsn("postgres://app:secret-pw@h/db?sslmode=require&password=other-pw")
    assert dsn.redacted() == "postgres://app:***@h:5432/db?sslmode=require&password=***"
    assert dsn.secrets() == ("secret-pw", "other-pw")
    assert parse_dsn("mysql://h/x").redacted() == "mysql://h:3306/x"
    odbc = parse_dsn("odbc:Driver={PostgreSQL Unicode};Server=h;UID=u;PWD={se;cret}")
    assert odbc.redacted() == "odbc:Driver=PostgreSQL Unicode;Server=h;UID=u;PWD=***;"
    assert str(dsn) == dsn.redacted()
    assert repr(dsn) == f"Dsn({dsn.redacted()})"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dial postgres://u:pw@h:5432/db failed", "dial postgres://u:***@h:5432/db failed"),
        ("mysql://root:p@ss@h/x", "mysql://root:***@h/x"),
        ("odbc+Drv%20X://u:p@h/db", "odbc+Drv%20X://u:***@h/db"),
        ("no creds: postgres://h:5432/db", "no creds: postgres://h:5432/db"),
        ("user only: mysql://root@h:3306", "user only: mysql://root@h:3306"),
        ("Driver={X};Server=h;PWD=abc;UID=u", "Driver={X};Server=h;PWD=***;UID=u"),
        ("Driver={X};Password={a;b}}c};UID=u", "Driver={X};Password=***;UID=u"),
        ("host=h password=abc user=u", "host=h password=*** user=u"),
        ("host=h password='a b' user=u", "host=h password='***' user=u"),
        ('{"password": "abc", "user": "u"}', '{"password": "***", "user": "u"}'),
        ("{'passwd': 'abc'}", "{'passwd': '***'}"),
        ("?sslpassword=k&x=1", "?sslpassword=***&x=1"),
        ("password authentication failed for user u", "password authentication failed for user u"),
    ],
)
def test_redact_patterns(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_literal_secrets() -> None:
    assert redact("login failed: s3cr3t!! was wrong", ["s3cr3t!!"]) == "login failed: *** was wrong"
    assert redact("in dsn: x://u:s3%20cr@h", ["s3 cr"]) == "in dsn: x://u:***@h"
    assert redact("in form: a=s3+cr", ["s3 cr"]) == "in form: a=***"
    # Short values are masked only where they stand alone, so ordinary words survive.
    assert (
        redact("result user u and port 5432 and 54321", ["u", "5432"])
        == "result user *** and port *** and 54321"
    )
    assert redact("nothing", ["", ""]) == "nothing"


def test_ensure_compatible() -> None:
    pg = parse_dsn("postgres://u:p@h/db")
    ensure_compatible(pg, "postgres")
    ensure_compatible(parse_dsn("mariadb://u:p@h/db"), "mysql")
    ensure_compatible(parse_dsn("mysql://u:p@h/db"), "mariadb")
    ensure_compatible(parse_dsn("sqlserver://u:p@h/db"), "sqlserver")
    ensure_compatible(parse_dsn("odbc:Driver={X};Server=h"), "sqlserver")
    ensure_compatible(parse_dsn("odbc:Driver={X};Server=h"), "odbc")
    with pytest.raises(DsnError, match="cannot serve a DatabaseClass with driver mysql"):
        ensure_compatible(pg, "mysql")
    with pytest.raises(DsnError, match="unknown DatabaseClass driver"):
        ensure_compatible(pg, "oracle")


def test_dsn_is_a_plain_value() -> None:
    dsn = Dsn("postgres", "postgres", "h", 5432, "u", "pw", "db")
    assert dict(dsn.options) == {}
    assert dsn.secrets() == ("pw",)
    assert "pw" not in repr(dsn)
