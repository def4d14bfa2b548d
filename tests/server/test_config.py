"""Settings: defaults, `SIGSEARCH_*` environment, the factory's overrides, and their checks."""

import pytest

from server import create_app
from server.__main__ import main

from .conftest import ADMIN


def test_environment_settings_are_read_and_converted(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSEARCH_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("SIGSEARCH_DATABASE", str(tmp_path / "env.sqlite3"))
    monkeypatch.setenv("SIGSEARCH_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("SIGSEARCH_MAX_CONTENT_LENGTH", "1234")
    token = "1" * 40  # digits only: must stay the text it is, not become a number
    monkeypatch.setenv("SIGSEARCH_ADMIN_TOKEN", token)
    config = create_app().config
    assert config["DATA_DIR"] == tmp_path / "env-data" and config["DATA_DIR"].is_dir()
    assert config["DATABASE"] == tmp_path / "env.sqlite3"
    assert config["ALLOWED_ORIGINS"] == ["https://a.example", "https://b.example"]
    assert config["MAX_CONTENT_LENGTH"] == 1234 and config["ADMIN_TOKEN"] == token


def test_factory_overrides_win_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSEARCH_MAX_CONTENT_LENGTH", "1234")
    app = create_app(
        {"DATA_DIR": tmp_path, "DATABASE": tmp_path / "db", "ADMIN_TOKEN": ADMIN,
         "MAX_CONTENT_LENGTH": 99}
    )  # fmt: skip
    assert app.config["MAX_CONTENT_LENGTH"] == 99 and "PUBLIC_URL" not in app.config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ADMIN_TOKEN": None}, "needs an admin token"),
        ({"ADMIN_TOKEN": "x" * 31}, "at least 32 characters, not 31"),
        ({"MAX_CONTENT_LENGTH": "lots"}, "must be a number of bytes"),
        ({"WRITE_WAIT_SECONDS": "soon"}, "must be seconds > 0"),
        ({"WRITE_WAIT_SECONDS": 0}, "must be > 0"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(tmp_path, monkeypatch, changes, message):
    monkeypatch.delenv("SIGSEARCH_ADMIN_TOKEN", raising=False)
    config = {"DATA_DIR": tmp_path, "DATABASE": tmp_path / "db", "ADMIN_TOKEN": ADMIN}
    with pytest.raises(ValueError, match=message):
        create_app({**config, **changes})


class FakeWaitress:
    """What `create_server` returns, recording its options and serving nothing."""

    effective_port = 9

    def __init__(self, app, **options) -> None:
        self.app, self.options = app, options

    def run(self) -> None:
        pass

    def close(self) -> None:
        pass


def _check_limits(served: dict) -> None:
    assert served["connection_limit"] > 110
    assert 16 * 1024 * 1024 < served["max_request_body_size"] <= 17 * 1024 * 1024
    assert served["channel_timeout"] <= 60 and served["asyncore_use_poll"] is True


def test_python_m_server_serves_with_the_transport_limits(tmp_path, monkeypatch):
    made: list[FakeWaitress] = []
    monkeypatch.setenv("SIGSEARCH_ADMIN_TOKEN", ADMIN)
    monkeypatch.setattr(
        "server.__main__.create_server",
        lambda app, **kw: made.append(FakeWaitress(app, **kw)) or made[-1],
    )
    monkeypatch.setattr("logging.basicConfig", lambda **kwargs: None)  # leave pytest's logging
    argv = ["--host", "0.0.0.0", "--data-dir", str(tmp_path / "d"), "--db", str(tmp_path / "db")]
    assert main([*argv, "--public-url", "http://192.0.2.1:5001"]) == 0
    served = made[0].options
    assert served["host"] == "0.0.0.0" and "url_scheme" not in served
    _check_limits(served)


def test_over_https_waitress_keeps_its_limits_behind_the_tls_front(tmp_path, monkeypatch):
    from server.embedded import free_loopback_port
    from server.tls import TlsFront

    from .certs import issue

    made: list[FakeWaitress] = []
    fronts: list[TlsFront] = []
    monkeypatch.setenv("SIGSEARCH_ADMIN_TOKEN", ADMIN)
    monkeypatch.setattr(
        "server.__main__.create_server",
        lambda app, **kw: made.append(FakeWaitress(app, **kw)) or made[-1],
    )
    start = TlsFront.start
    monkeypatch.setattr(TlsFront, "start", lambda self: fronts.append(self) or start(self))
    monkeypatch.setattr("logging.basicConfig", lambda **kwargs: None)
    certs = issue(tmp_path / "certs")
    argv = ["--port", str(free_loopback_port()), "--data-dir", str(tmp_path / "d"),
            "--db", str(tmp_path / "db"), "--certfile", str(certs.cert), "--keyfile", str(certs.key)]  # fmt: skip
    try:
        assert main(argv) == 0
    finally:
        for front in fronts:
            front.stop()
    served = made[0].options
    # waitress only on loopback; the front listens where asked, with waitress's connection limit.
    assert served["host"] == "127.0.0.1" and served["port"] == 0 and served["url_scheme"] == "https"
    _check_limits(served)
    assert fronts[0].upstream_port == FakeWaitress.effective_port
    assert fronts[0].connection_limit == served["connection_limit"]
