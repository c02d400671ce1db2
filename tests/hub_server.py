"""A local Hugging Face hub for tests: an HTTP server on 127.0.0.1 answering the endpoints
huggingface_hub calls to resolve a revision, list a commit's files and download them, with
branches that can move, gated repositories (401 without a token, 403 with a wrong one) and the
hub's error codes (X-Error-Code) for a missing repository or revision. Started and stopped by
the test that uses it (LocalHub is a context manager); it holds its repositories in memory.
Faults for the client's timeouts: `fault` "500" answers every request with a server error,
"hang" accepts the connection and never answers, "close" sends half of a file and closes."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


def commit_of(files: dict[str, bytes]) -> str:
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha1(files[name]).digest())
    return digest.hexdigest()


class LocalHub:
    def __init__(self, token: str = "hf_local_secret"):
        self.repos: dict[
            str, dict
        ] = {}  # repo -> {"refs": {branch: commit}, "commits": {commit: files}, "gated": bool}
        self.token = token
        self.requests: list[str] = []
        self.fault: str | None = None  # None, "500", "hang" or "close" (files only)
        self._stopping = threading.Event()

    def publish(
        self, repo: str, folder: Path | dict, branch: str = "main", gated: bool = False, commit: str | None = None
    ) -> str:
        """Commit FOLDER's files (or a name -> bytes dict) to REPO's BRANCH (a commit hash of
        their content, or COMMIT: a pinned revision the hub holds); the commit hash."""
        files = folder if isinstance(folder, dict) else {p.name: p.read_bytes() for p in Path(folder).iterdir()}
        commit = commit or commit_of(files)
        entry = self.repos.setdefault(repo, {"refs": {}, "commits": {}, "gated": gated})
        entry["commits"][commit] = files
        entry["refs"][branch] = commit
        return commit

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> LocalHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._serve(self, body=False)

            def do_GET(self):
                hub._serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stopping.set()  # a hanging answer ends
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    # ---- the hub's answers ---------------------------------------------------------------------
    def _reply(self, handler, status: int, payload: bytes = b"", headers: dict | None = None, body: bool = True):
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if body:
            handler.wfile.write(payload)

    def _error(self, handler, status: int, code: str, body: bool):
        payload = json.dumps({"error": code}).encode()
        self._reply(handler, status, payload, {"X-Error-Code": code, "Content-Type": "application/json"}, body)

    def _serve(self, handler, body: bool):
        path = unquote(urlparse(handler.path).path)
        self.requests.append(f"{handler.command} {path}")
        if self.fault == "500":
            return self._reply(handler, 500, b"Internal Server Error", {"Content-Type": "text/plain"}, body)
        if self.fault == "hang":
            self._stopping.wait(600)
            return None
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)(/.*)?", path)
        file = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        match = api or file
        if match is None:
            return self._error(handler, 404, "EntryNotFound", body)
        repo, revision = match[1], match[3] if api else match[2]
        entry = self.repos.get(repo)
        if entry is None:
            return self._error(handler, 404, "RepoNotFound", body)
        commit = entry["refs"].get(revision, revision if revision in entry["commits"] else None)
        if commit is None:
            return self._error(handler, 404, "RevisionNotFound", body)
        files = entry["commits"][commit]
        if api and api[2] == "revision":
            info = {"id": repo, "modelId": repo, "sha": commit, "private": False, "gated": "manual" if entry["gated"] else False,
                    "siblings": [{"rfilename": name} for name in sorted(files)], "tags": [], "downloads": 0, "likes": 0}  # fmt: skip
            return self._reply(handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
        if api:  # tree
            tree = [
                {"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for n, b in sorted(files.items())
            ]
            return self._reply(handler, 200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, body)
        if entry["gated"]:  # the files of a gated repository need a token with access
            sent = handler.headers.get("Authorization", "")
            if not sent:
                return self._error(handler, 401, "GatedRepo", body)
            if sent != f"Bearer {self.token}":
                return self._error(handler, 403, "GatedRepo", body)
        name = file[3]
        if name not in files:
            return self._error(handler, 404, "EntryNotFound", body)
        data = files[name]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
        if self.fault == "close" and body:  # half the file, then the connection closes
            handler.send_response(200)
            for key, value in (headers | {"Content-Length": str(len(data))}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return None
        return self._reply(handler, 200, data, headers, body)
