#!/usr/bin/env python3
"""caching_sha2_password through the MySQL proxy with PyMySQL, driven by
mysql_proxy_auth.sh:

  auth.py PROXY_PORT

The fast path (the scramble checked, 0x03); then full authentication, which
the proxy asks for (0x04) when the scramble does not match, as MySQL 8 does on
a cache miss: the client's scramble is corrupted on purpose so that PyMySQL
takes it: over TLS it sends the password itself, without TLS it fetches the
proxy's RSA public key and sends the password encrypted. A wrong password
fails on every path. Prints one line; exits non-zero on a failed check.
"""
import ssl, sys

import pymysql
from pymysql import _auth

port = int(sys.argv[1])
calls = {"rsa": 0, "scramble": 0}
real_scramble, real_rsa = _auth.scramble_caching_sha2, _auth.sha2_rsa_encrypt
corrupt = False


def scramble(password, nonce):
    calls["scramble"] += 1
    r = real_scramble(password, nonce)
    return bytes(b ^ 0x55 for b in r) if corrupt and r else r


def rsa(password, salt, public_key):
    calls["rsa"] += 1
    if b"BEGIN PUBLIC KEY" not in public_key:
        fail(f"the public key is not a PEM: {public_key[:40]!r}")
    return real_rsa(password, salt, public_key)


_auth.scramble_caching_sha2, _auth.sha2_rsa_encrypt = scramble, rsa


def fail(msg):
    print("FAIL", msg)
    sys.exit(1)


def login(password="apppw", tls=False):
    kw = {}
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        kw["ssl"] = ctx
    c = pymysql.connect(host="127.0.0.1", port=port, user="app", password=password, database="shop", **kw)
    cur = c.cursor()
    cur.execute("SELECT CURRENT_USER(), @@port")
    row = cur.fetchone()
    plugin = c._auth_plugin_name
    c.close()
    return row, plugin


def denied(**kw):
    try:
        login(password="wrong", **kw)
    except pymysql.err.OperationalError as e:
        return e.args[0] == 1045
    return False


def rsa_calls(fn, **kw):
    before = calls["rsa"]
    result = fn(**kw)
    return result, calls["rsa"] - before


(row, plugin), n = rsa_calls(login)
if plugin != "caching_sha2_password" or n:
    fail(f"fast path: plugin {plugin}, rsa calls {n}")
# A wrong password fails the fast path, then full authentication (with the RSA key, no TLS here).
ok, n = rsa_calls(denied)
if not ok or n != 1:
    fail(f"a wrong password without TLS: refused {ok}, rsa calls {n}")
corrupt = True
(row_tls, _), n = rsa_calls(login, tls=True)
if n:
    fail("full authentication over TLS used RSA")
(row_rsa, _), n = rsa_calls(login)
if n != 1:
    fail(f"full authentication without TLS did not use the RSA key ({n} calls)")
if not denied(tls=True) or not denied():
    fail("a wrong password got in through full authentication")
print(f"pymysql ok: caching_sha2_password fast path {row}; full authentication over TLS {row_tls} and with the "
      f"proxy's RSA key {row_rsa}; wrong passwords refused (1045) on each path")
