"""The sealed session cookie: pure logic, no browser."""

from __future__ import annotations

from pathlib import Path

from dployr.gateway.dashboard import Sessions, load_key, safe_next

KEY = bytes(range(32))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_opens_and_reads_back() -> None:
    sessions = Sessions(KEY, lambda token: token == "good")
    session, cookie = sessions.open("good")
    assert "good" not in cookie
    assert sessions.read(cookie) == session
    # Another key (another daemon) cannot read it.
    assert Sessions(bytes(32), lambda token: True).read(cookie) is None


def test_forged_or_garbled_cookies_are_refused() -> None:
    sessions = Sessions(KEY, lambda token: True)
    _, cookie = sessions.open("good")
    flipped = cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]
    for bad in (None, "", "x", "!!!", flipped, cookie + "A", "A" * 5000):
        assert sessions.read(bad) is None


def test_sessions_expire_and_end_with_their_token() -> None:
    clock = Clock()
    valid = {"good"}
    sessions = Sessions(KEY, lambda token: token in valid, lifetime=100, clock=clock)
    _, cookie = sessions.open("good")
    clock.now += 99
    assert sessions.read(cookie) is not None
    clock.now += 1
    assert sessions.read(cookie) is None
    clock.now -= 50
    valid.clear()  # the token was deleted
    assert sessions.read(cookie) is None


def test_logout_revokes_and_csrf_tokens_belong_to_one_session() -> None:
    sessions = Sessions(KEY, lambda token: True)
    one, cookie = sessions.open("good")
    two, _ = sessions.open("good")
    assert sessions.check_csrf(one, sessions.csrf_token(one))
    assert not sessions.check_csrf(one, sessions.csrf_token(two))
    assert not sessions.check_csrf(one, None)
    sessions.revoke(one)
    assert sessions.read(cookie) is None


def test_the_key_is_kept_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "dashboard-key"
    key = load_key(path)
    assert len(key) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_key(path) == key


def test_only_local_paths_are_followed_after_login() -> None:
    assert safe_next("/services/web/logs?x=1") == "/services/web/logs?x=1"
    for bad in (None, "", "https://evil.example/", "//evil.example/x", "/\\evil", "services"):
        assert safe_next(bad) == "/services"
