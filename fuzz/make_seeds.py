#!/usr/bin/env python3
"""Writes the hand-made seed corpus (fuzz/corpus/<target>/seed-*): valid inputs of each
target. Re-run after a protocol change; the files are committed."""
import json, os, struct, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

def body(msg):
    return json.dumps({"v": 1, "msg": msg}, separators=(",", ":")).encode()

def frame(msg):
    b = body(msg)
    return struct.pack(">I", len(b)) + b

ctx = {"type": "begin", "user": "alice", "service": "sshd", "rhost": "192.0.2.7",
       "tty": "ssh", "ruser": None, "autopush": False}
requests = {
    "begin": ctx,
    "begin-minimal": {"type": "begin", "user": "alice", "service": "sudo"},
    "otp": {"type": "otp", "code": "123456"},
    "otp-recovery": {"type": "otp", "code": "abcd-efgh-ijkl"},
    "push": {"type": "push"},
    "wait": {"type": "wait", "timeout_ms": 5000},
    "cancel": {"type": "cancel"},
    "registration-response": {"type": "registration_response", "code": "482913"},
    "registration-approve": {"type": "registration_approve", "user": "alice", "code": "739201"},
    "enroll": {"type": "enroll", "user": "alice", "force": False},
    "activate": {"type": "activate", "user": "alice", "code": "123456"},
    "status": {"type": "status", "user": "alice"},
    "remove": {"type": "remove", "user": "alice"},
    "pair-phrase": {"type": "pair", "user": "alice", "by": {"by": "phrase", "phrase": "correct horse"}},
    "pair-sms": {"type": "pair", "user": "alice", "by": {"by": "sms", "phone": "5555550100", "country": "1"}},
    "pair-qr": {"type": "pair", "user": "alice", "by": {"by": "qr"}},
    "pair-status": {"type": "pair_status", "user": "alice", "pairing_id": "p-1"},
    "pair-phrase-login": {"type": "pair_phrase", "phrase": "correct horse"},
    "list": {"type": "list"},
    "reset-link": {"type": "reset_link", "user": "alice", "email": "a@example.com"},
    "set-enabled": {"type": "set_enabled", "user": "alice", "enabled": False},
    "reset": {"type": "reset", "user": "alice"},
    "terminal-create": {"type": "terminal_create", "user": "alice", "name": "laptop", "requester_id": "t1"},
    "terminal-show": {"type": "terminal_show", "user": "alice", "id": "t1"},
    "regenerate": {"type": "regenerate_recovery_codes", "user": "alice"},
}
status = {"user": "alice", "backend": "local", "state": "active", "created_at": 1, "activated_at": 2,
          "expires_at": None, "last_success_at": 3, "last_failure_at": None,
          "recovery_codes_left": 10, "locked_until": None, "pairing_id": None, "enabled": True}
responses = {
    "allow": {"type": "allow", "reason": "not_enrolled"},
    "allow-failmode": {"type": "allow", "reason": "failmode"},
    "challenge": {"type": "challenge", "methods": ["otp", "recovery_code"], "push_pending": False},
    "challenge-push": {"type": "challenge", "methods": ["otp", "push"], "push_pending": True},
    "register": {"type": "register", "registration_code": "482913", "expires_in_secs": 600},
    "granted": {"type": "granted", "method": "otp"},
    "denied": {"type": "denied", "reason": "wrong_code"},
    "denied-message": {"type": "denied", "reason": "push_denied", "message": "Not me"},
    "pending": {"type": "pending"},
    "unavailable": {"type": "unavailable", "detail": "api timeout"},
    "enrollment": {"type": "enrollment", "user": "alice", "secret": "JBSWY3DPEHPK3PXP",
                   "otpauth_uri": "otpauth://totp/h:alice?secret=JBSWY3DPEHPK3PXP",
                   "recovery_codes": ["abcd-efgh-ijkl"], "expires_at": 1700000000},
    "activated": {"type": "activated", "user": "alice"},
    "status": dict(status, type="status"),
    "removed": {"type": "removed", "user": "alice", "existed": True},
    "pairing": {"type": "pairing", "user": "alice", "pairing_id": "p-1", "enabled": True,
                "pending": False, "qr_png_base64": None},
    "accounts": {"type": "accounts", "accounts": [status]},
    "reset-link": {"type": "reset_link", "user": "alice", "url": "https://x/r", "emailed_to": None},
    "terminal": {"type": "terminal", "id": "t1", "name": "laptop", "requester_specified_id": "r", "user": "alice"},
    "recovery-codes": {"type": "recovery_codes", "user": "alice", "codes": ["abcd-efgh-ijkl", "mnop-qrst-uvwx"]},
    "registration-approved": {"type": "registration_approved", "user": "alice", "response_code": "739201"},
    "registration-retry": {"type": "registration", "status": "WrongResponse", "message": "Try again.", "next": "retry"},
    "registration-start-over": {"type": "registration", "status": "Failed", "message": "Expired.",
                                "next": "start_over", "registration_code": "111222", "expires_in_secs": 600},
    "registration-enroll": {"type": "registration", "status": "Registered", "message": "Registered.",
                            "next": "enroll_totp", "qr_text": "\u2588\u2588 \u2588\n\u2588 \u2588\u2588",
                            "secret": "JBSWY3DPEHPK3PXP", "otpauth_uri": "otpauth://totp/h:alice?secret=JBSWY3DPEHPK3PXP",
                            "recovery_codes": ["abcd-efgh-ijkl"]},
    "registration-pair": {"type": "registration", "status": "Registered", "message": "Pair.", "next": "pair_phrase"},
    "error": {"type": "error", "kind": "bad_request", "message": "no login in progress"},
    "error-busy": {"type": "error", "kind": "busy", "message": "at the connection limit"},
    # Text with terminal escapes, line breaks and a bell: none of it may reach a terminal or a log.
    "denied-escape": {"type": "denied", "reason": "policy", "message": "\x1b[2J\x1b]0;owned\x07 gone\r\n"},
    "push-denied-escape": {"type": "denied", "reason": "push_denied", "message": "\x1b[31mno\nreally"},
    "unavailable-escape": {"type": "unavailable", "detail": "\x1b[2Jdown\nuser=root outcome=granted"},
    "error-escape": {"type": "error", "kind": "internal", "message": "\x1b[2J\nfake line"},
    "register-escape": {"type": "register", "registration_code": "\x1b[2J4829\n13", "expires_in_secs": 4294967295},
    "registration-escape": {"type": "registration", "status": "NotApproved", "message": "\x1b[2Jnot yet\r",
                            "next": "retry"},
    "registration-start-over-escape": {"type": "registration", "status": "Failed", "message": "\x1b]0;x\x07",
                                       "next": "start_over", "registration_code": "\x1b[1m1112\r22",
                                       "expires_in_secs": 0},
    "registration-enroll-escape": {"type": "registration", "status": "Registered", "message": "\x1b[5mok",
                                   "next": "enroll_totp", "qr_text": "\u2588\r\x1b[2J\n\u2588",
                                   "secret": "JBSW\x1b[8mY3DP", "otpauth_uri": "otpauth://\x1b[2J",
                                   "recovery_codes": ["abcd\x1b[2J", "\r\n"]},
}
for n, m in requests.items():
    put("ipc_request", n, body(m))
for n, m in responses.items():
    put("ipc_response", n, body(m))
    put("lean_vs_serde", n, body(m))
# The module's codec against serde's: its answers above, and the requests it writes.
for n, m in requests.items():
    if m["type"] in ("begin", "otp", "push", "wait", "cancel", "registration_response",
                     "pair_phrase", "grace_token", "bind_session"):
        put("lean_vs_serde", "request-" + n, body(m))
put("ipc_frame", "login", frame(ctx) + frame(requests["otp"]) + frame(responses["granted"]))
put("ipc_frame", "push", frame(requests["push"]) + frame(responses["pending"]) + frame(requests["wait"]))
put("ipc_frame", "truncated", frame(requests["status"])[:9])
put("ipc_frame", "oversized", struct.pack(">I", 16 * 1024 + 1) + b"{")
# At the limit: a valid body padded to exactly 16 KiB, then one byte over (runs with -max_len=17000).
at_limit = body(requests["status"])
at_limit += b" " * (16 * 1024 - len(at_limit))
put("ipc_frame", "at-limit", struct.pack(">I", len(at_limit)) + at_limit)
put("ipc_frame", "over-limit", struct.pack(">I", len(at_limit) + 1) + at_limit + b" ")

# module_flow: flags, 8 scripted answers (byte % 6: "", otp, recovery, padded otp, too long, abort),
# then toopherd's answers as frames.
R = lambda *names: b"".join(frame(responses[n]) for n in names)
flows = {
    "otp-granted": (0b00000, [1] * 8, R("challenge", "granted")),
    "otp-wrong-then-granted": (0b01000, [1, 3, 1, 1, 1, 1, 1, 1], R("challenge", "denied", "granted")),
    "recovery-granted": (0, [2] * 8, R("challenge", "granted")),
    "allow": (0, [0] * 8, R("allow")),
    "push-approved": (0b00110, [0] * 8, R("challenge-push", "pending", "pending", "granted")),
    "push-denied-then-otp": (0b10000, [0, 1, 1, 1, 1, 1, 1, 1], R("challenge-push", "denied-message", "granted")),
    "unreachable-secure": (0, [0] * 8, b""),
    "unreachable-safe": (1, [0] * 8, b""),
    "unavailable": (0, [0] * 8, R("unavailable")),
    "error": (0, [0] * 8, R("error-busy")),
    "registration-enroll": (0b11000, [1] * 8, R("register", "registration-enroll", "granted")),
    "registration-retry": (0b11000, [1] * 8, R("register", "registration-retry", "registration-start-over", "registration-pair", "pending", "granted")),
    "abort": (0, [5] * 8, R("challenge")),
    "too-long": (0, [4] * 8, R("challenge")),
    "denied-escape": (0, [1] * 8, R("denied-escape")),
    "otp-then-denied-escape": (0, [1] * 8, R("challenge", "denied-escape")),
    "push-denied-escape": (0b11000, [0, 1, 1, 1, 1, 1, 1, 1], R("challenge-push", "pending", "push-denied-escape", "unavailable-escape")),
    "unavailable-escape": (0, [0] * 8, R("unavailable-escape")),
    "error-escape": (0b00100, [1] * 8, R("challenge", "error-escape")),
    "registration-escape": (0b11000, [1] * 8, R("register-escape", "registration-escape", "registration-start-over-escape", "registration-enroll-escape", "denied-escape")),
}
for n, (flags, script, stream) in flows.items():
    put("module_flow", n, bytes([flags]) + bytes(script) + stream)

options = {
    "empty": "",
    "defaults": "failmode=secure prompts=3 socket=/run/toopherd/toopherd.sock",
    "all": "debug autopush failmode=safe prompts=10 timeout=900 socket=/tmp/t.sock",
    "timeout": "timeout=30 prompts=1",
    "bad": "nullok failmode=open",
    "bad-failmode": "failmode=open",
    "bad-prompts": "prompts=0",
    "bad-socket": "socket=relative.sock",
    "bad-timeout": "timeout=901",
    "bad-flag": "debug=1",
    "last-wins": "failmode=safe failmode=secure prompts=2 prompts=3",
}
for n, line in options.items():
    put("pam_options", n, line)

configs = {
    "packaged": open(os.path.join(os.path.dirname(ROOT), "..", "packaging", "toopherd.toml")).read(),
    "empty": "",
    "local": 'socket = "/run/toopherd/toopherd.sock"\nstate_dir = "/var/lib/toopherd"\nbackend = "local"\n'
             'failmode = "secure"\navailability = "required"\nenrollment_ttl = 600\nissuer = "host"\n'
             'enroll = "two-way"\nregistration_ttl = 600\nadmin_group = "wheel"\n'
             '[rate_limit]\nmax_failures = 5\nwindow = 300\n',
    "toopher": 'backend = "toopher"\nfailmode = "safe"\navailability = "available"\n[toopher]\n'
               'base_url = "https://api.toopher.test/v1"\ncredentials_file = "/etc/toopher/credentials.toml"\n'
               'ca_file = "/etc/toopher/ca.pem"\ntimeout = 10\npoll_interval = 0.5\npush_timeout = 60\n'
               'automation_allowed = true\nallow_http = false\nuser_name_format = "{user}@example.com"\n'
               '[toopher.services.sudo]\nautomation_allowed = false\naction = "sudo"\n'
               '[toopher.services.sshd]\naction = "SSH login"\n',
    "bad": 'failmode = "open"\n[rate_limit]\nmax_failures = 0\n',
}
for n, text in configs.items():
    put("daemon_config", n, text)

def code_input(now, secret, typed, cut=0):
    return struct.pack("<Q", now) + bytes([len(secret), cut]) + secret + typed.encode()

rfc = b"12345678901234567890"
put("code_normalise", "rfc-otp", code_input(59, rfc, "287082"))
put("code_normalise", "rfc-otp-2", code_input(1234567890, rfc, "005924"))
put("code_normalise", "otp-padded", code_input(1111111109, rfc, "  081804\n"))
put("code_normalise", "recovery", code_input(0, rfc, "abcd-efgh-ijkl", 5))
put("code_normalise", "recovery-upper-spaces", code_input(0, rfc, " ABCD EFGH IJKL ", 9))
put("code_normalise", "recovery-plain", code_input(0, b"", "qzvbxk2m7tnd"))
put("code_normalise", "escape", code_input(0, b"", "\x1b[2J123456\r"))

user = {"id": "u1", "name": "jdoe", "toopher_authentication_enabled": True}
terminal = {"id": "t1", "name": "term", "requester_specified_id": "rs", "user": user}
auth = {"id": "a1", "pending": False, "granted": True, "automated": False, "reason": "it is a test",
        "reason_code": 100, "terminal": terminal, "user": user, "action": {"id": "x1", "name": "Log In"}}
pairing = {"id": "p1", "enabled": True, "pending": False, "user": user, "deactivated": False}
def answer(kind, status, obj):
    b = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    head = {200: bytes([0, 0, 0]), 429: bytes([2, 4, 1])}.get(status)
    if head is None:
        head = bytes([3]) + struct.pack(">H", status - 100)
    put("api_response", kind, head + b)
put_a = answer
put_a("auth-granted", 200, auth)
put_a("auth-pending", 200, dict(auth, pending=True, granted=False, reason_code=None))
put_a("auth-denied-string-code", 200, dict(auth, granted=False, reason_code="101"))
put_a("pairing", 200, pairing)
put_a("user", 200, user)
put_a("users", 200, [user])
put_a("terminal", 200, terminal)
put_a("error-704", 409, {"error_code": 704, "error_message": "The specified user has disabled Toopher authentication."})
put_a("error-601", 403, {"error_code": "601", "error_message": "This pairing has been deactivated."})
put_a("rate-limited", 429, {"error_code": 429, "error_message": "slow down"})
put_a("server-error", 503, b"<html>down</html>")
put_a("not-json", 200, b"not json")

vector = [("id", "1"), ("pending", "false"), ("granted", "true"), ("automated", "false"),
          ("reason", "it is a test"), ("reason_code", "100"), ("terminal_id", "1"),
          ("terminal_name", "terminal name"), ("terminal_requester_specified_id", "requester specified id"),
          ("pairing_user_id", "1"), ("user_name", "user name"), ("user_toopher_authentication_enabled", "true"),
          ("action_id", "1"), ("action_name", "action name"), ("session_token", "s9s7vsb"),
          ("timestamp", "1000"), ("resource_type", "authentication_request"),
          ("toopher_sig", "s+fYUtChrNMjES5Xa+755H7BQKE=")]
from urllib.parse import urlencode
put("iframe_postback", "auth-request", b"\x01" + urlencode(vector).encode())
pair = [("id", "p1"), ("enabled", "true"), ("pending", "false"), ("pairing_user_id", "1"),
        ("user_name", "user name"), ("user_toopher_authentication_enabled", "true"),
        ("session_token", "s9s7vsb"), ("timestamp", "999"), ("resource_type", "pairing")]
put("iframe_postback", "pairing", b"\x00" + urlencode(pair).encode())
ruser = [("id", "1"), ("name", "user name"), ("toopher_authentication_enabled", "true"),
         ("session_token", "s9s7vsb"), ("timestamp", "999"), ("resource_type", "requester_user")]
put("iframe_postback", "requester-user", b"\x00" + urlencode(ruser).encode())
put("iframe_postback", "error", b"\x00error_code=704&error_message=The+user+has+disabled+Toopher+authentication")
