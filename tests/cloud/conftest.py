"""Fixtures of the cloud service tests: a real PostgreSQL (harness.pgkit) and a real mosquitto for the cloud broker."""

from __future__ import annotations

import itertools
import os

import pytest

from harness.broker import Mosquitto

_dbs = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL per test worker (as an unprivileged user when run as root); each test gets its own database."""
    from harness.pgkit import Postgres
    srv = Postgres().start()
    yield srv
    srv.destroy()


@pytest.fixture
def pg_dsn(pg_server):
    """A fresh, empty database on the worker's PostgreSQL."""
    import psycopg
    name = f"t{os.getpid()}_{next(_dbs)}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    yield f"host=127.0.0.1 port={pg_server.port} user=fogline dbname={name}"


@pytest.fixture
def pg_own():
    """A PostgreSQL of this test alone (it may be restarted or killed)."""
    from harness.pgkit import Postgres
    srv = Postgres().start()
    yield srv
    srv.destroy()


@pytest.fixture
def cloud_broker(tmp_path):
    """The cloud broker: unlimited session queues (an offline consumer's messages wait for it) and in-flight."""
    b = Mosquitto(tmp_path / "mq", extra_conf="max_queued_messages 0\nmax_inflight_messages 0\n").start()
    yield b
    b.stop()
