"""Fixtures for intake tests that need a real multithreaded HTTP server."""

import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler as _StaticFilesHandler
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test.testcases import LiveServerThread


class _BacklogServer(ThreadedWSGIServer):
    # Django's development server listens with a backlog of 10; fifty simultaneous connects
    # would be reset by the kernel before Django saw them. gunicorn's backlog is 2048.
    request_queue_size = 128


class _LiveServerThread(LiveServerThread):
    server_class = _BacklogServer


@pytest.fixture
def threaded_server(transactional_db):
    """Django's multithreaded live server (one thread and one PostgreSQL connection per
    request), with a listen backlog large enough for a burst."""
    thread = _LiveServerThread("127.0.0.1", _StaticFilesHandler)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait(10)
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()
