#!/usr/bin/env python3
"""A local stand-in for the Hugging Face Hub, for tests without network (Python 3 stdlib only).

    python3 fake_hub.py SPEC.json

SPEC.json:
    {"repos": {"owner/name": {"commits": {"<40 hex>": "/folder/with/the/files", ...},
                              "refs": {"main": "<40 hex>", "v1.0": "<40 hex>"},
                              "gated_token": "hf_..."},          # optional: 401 GatedRepo without this Bearer token
               "old/name": {"renamed_to": "owner/name"}}}      # relative 307 redirects, as for a renamed repo

Serves, on 127.0.0.1 only:
  HEAD/GET /{repo}/resolve/{revision}/{path}   X-Repo-Commit, ETag (git blob sha1) for small files; LFS files
           (.safetensors .bin .ckpt .msgpack .onnx .pb .pt) answer 302 to a second "CDN" server with
           X-Linked-Etag (sha256) and X-Linked-Size; small files of a branch answer a relative 307 to
           /api/resolve-cache/models/{repo}/{commit}/{path}, as the Hub does; Range requests answer 206.
  GET /api/models/{repo}[/revision/{revision}]  {"id", "sha", "siblings": [{"rfilename"}], ...}
  GET /api/models/{repo}/tree/{revision}[/{path}]  the recursive listing huggingface_hub's snapshot_download reads.
  Errors as the Hub: 404 with X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound, 401 GatedRepo.
Test knobs: POST /_control {"drop_after": N, "drop_count": K, "corrupt_count": K, "refuse_all": bool}:
  the next K blob GETs drop the connection after N bytes / serve one flipped byte.
  GET /_log lists the requests seen (method, path, range, authorization, server); DELETE /_log clears it.
The first stdout line is the Hub port, the second the CDN port. Stop it with SIGTERM/SIGINT.
"""
import hashlib
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

LFS_EXTENSIONS = (".safetensors", ".bin", ".ckpt", ".msgpack", ".onnx", ".pb", ".pt", ".pth")
LOCK = threading.Lock()
STATE = {"drop_after": None, "drop_count": 0, "corrupt_count": 0, "refuse_all": False, "log": []}


class Repo:
    def __init__(self, spec):
        self.commits = {sha: os.path.abspath(folder) for sha, folder in spec.get("commits", {}).items()}
        self.refs = dict(spec.get("refs", {}))
        self.gated_token = spec.get("gated_token")
        self.renamed_to = spec.get("renamed_to")
        self._files = {}

    def resolve(self, revision):
        if revision in self.commits:
            return revision
        return self.refs.get(revision)

    def files(self, commit):
        """{path: info} with size, git sha1, and sha256 for LFS files."""
        if commit not in self._files:
            root, out = self.commits[commit], {}
            for dirpath, _, names in os.walk(root):
                for name in names:
                    full = os.path.join(dirpath, name)
                    rel = os.path.relpath(full, root).replace(os.sep, "/")
                    with open(full, "rb") as f:
                        data = f.read()
                    info = {"full": full, "size": len(data),
                            "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                    if rel.endswith(LFS_EXTENSIONS):
                        info["sha256"] = hashlib.sha256(data).hexdigest()
                    out[rel] = info
            self._files[commit] = out
        return self._files[commit]


def load_repos(path):
    with open(path) as f:
        spec = json.load(f)
    return {name: Repo(r) for name, r in spec["repos"].items()}


REPOS = {}
BLOBS = {}  # sha256 -> file path, for the CDN
CDN_PORT = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_role = "hub"

    def log_message(self, *args):
        pass

    def record(self):
        with LOCK:
            STATE["log"].append({"server": self.server_role, "method": self.command, "path": self.path,
                                 "range": self.headers.get("Range"), "authorization": self.headers.get("Authorization"),
                                 "user_agent": self.headers.get("User-Agent"),
                                 "accept_encoding": self.headers.get("Accept-Encoding")})

    def send(self, status, body=b"", headers=None, content_type="application/json"):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, message, extra=None):
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        headers.update(extra or {})
        self.send(status, json.dumps({"error": message}).encode(), headers)

    def serve_bytes(self, full, etag_headers, knobs=True):
        """The file's bytes with Range support; the test knobs may drop or corrupt this response."""
        with open(full, "rb") as f:
            data = f.read()
        start, status = 0, 200
        headers = dict(etag_headers)
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes="):-1])
            if start >= len(data):
                return self.send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        drop_after, corrupt = None, False
        if knobs and self.command == "GET":
            with LOCK:
                if STATE["drop_count"] > 0 and STATE["drop_after"] is not None:
                    STATE["drop_count"] -= 1
                    drop_after = STATE["drop_after"]
                if STATE["corrupt_count"] > 0:
                    STATE["corrupt_count"] -= 1
                    corrupt = True
        if corrupt and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.command == "HEAD":
            return
        if drop_after is not None:
            self.wfile.write(body[:drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the peer sees a truncated body, as on a dropped connection
            return
        self.wfile.write(body)

    def authorized(self, repo):
        return repo.gated_token is None or self.headers.get("Authorization") == f"Bearer {repo.gated_token}"

    def find_repo(self, parts):
        """(repo_id, Repo, rest) from path parts owner/name/...; None when unknown."""
        if len(parts) < 2:
            return None
        repo_id = f"{parts[0]}/{parts[1]}"
        return (repo_id, REPOS.get(repo_id), parts[2:])

    def do_HEAD(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.record()
        if self.path == "/_control":
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with LOCK:
                STATE.update(json.loads(body or b"{}"))
            return self.send(200, b"{}")
        self.send(404, b"{}")

    def do_DELETE(self):
        if self.path == "/_log":
            with LOCK:
                STATE["log"].clear()
            return self.send(200, b"{}")
        self.send(404, b"{}")

    def handle_any(self):
        path = urlsplit(self.path).path
        if path == "/_log":
            with LOCK:
                body = json.dumps(STATE["log"]).encode()
            return self.send(200, body)
        self.record()
        with LOCK:
            refuse = STATE["refuse_all"]
        if refuse:
            return self.error(500, "Internal", "refusing all requests (test knob)")
        if self.server_role == "cdn":
            return self.handle_cdn(path)
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "resolve-cache", "models"]:
            return self.handle_resolve_cache(parts[3:])
        if parts[:2] == ["api", "models"]:
            return self.handle_api(parts[2:])
        found = self.find_repo(parts)
        if found is None or len(found[2]) < 3 or found[2][0] != "resolve":
            return self.error(404, "RepoNotFound", "Repository not found")
        repo_id, repo, rest = found
        if repo is None:
            return self.error(404, "RepoNotFound", "Repository not found")
        if repo.renamed_to:
            # Relative, as the Hub redirects renamed repos on the same host.
            return self.send(307, b"", {"Location": "/" + repo.renamed_to + "/" + "/".join(rest)})
        if not self.authorized(repo):
            return self.error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in.")
        revision = unquote(rest[1])
        commit = repo.resolve(revision)
        if commit is None:
            return self.error(404, "RevisionNotFound", "Invalid rev id: " + revision)
        file_path = unquote("/".join(rest[2:]))
        info = repo.files(commit).get(file_path)
        if info is None:
            return self.error(404, "EntryNotFound", f"{file_path} does not exist on \"{revision}\"", {"X-Repo-Commit": commit})
        if "sha256" in info:
            BLOBS[info["sha256"]] = info["full"]
            location = f"http://127.0.0.1:{CDN_PORT[0]}/cdn/{info['sha256']}?name={quote(file_path.split('/')[-1])}"
            return self.send(302, b"", {"Location": location, "X-Repo-Commit": commit, "ETag": f"\"{info['oid']}\"",
                                        "X-Linked-Etag": f"\"{info['sha256']}\"", "X-Linked-Size": str(info["size"])})
        if revision != commit:
            # As the Hub does for small files of a branch: a relative redirect to the commit-pinned cache route.
            return self.send(307, b"", {"Location": f"/api/resolve-cache/models/{repo_id}/{commit}/{quote(file_path)}",
                                        "X-Repo-Commit": commit, "ETag": f"\"{info['oid']}\""})
        self.serve_bytes(info["full"], {"X-Repo-Commit": commit, "ETag": f"\"{info['oid']}\""}, knobs=False)

    def handle_resolve_cache(self, parts):
        """/api/resolve-cache/models/{owner}/{name}/{commit}/{path}: a small file at a commit."""
        found = self.find_repo(parts)
        if found is None or found[1] is None or len(found[2]) < 2:
            return self.error(404, "RepoNotFound", "Repository not found")
        repo_id, repo, rest = found
        if not self.authorized(repo):
            return self.error(401, "GatedRepo", f"Access to model {repo_id} is restricted. Please log in.")
        commit, file_path = rest[0], unquote("/".join(rest[1:]))
        info = repo.files(commit).get(file_path) if commit in repo.commits else None
        if info is None:
            return self.error(404, "EntryNotFound", f"{file_path} does not exist", {"X-Repo-Commit": commit})
        self.serve_bytes(info["full"], {"X-Repo-Commit": commit, "ETag": f"\"{info['oid']}\""}, knobs=False)

    def handle_cdn(self, path):
        parts = path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "cdn" or parts[1] not in BLOBS:
            return self.send(403, b"<Error>AccessDenied</Error>", content_type="application/xml")
        self.serve_bytes(BLOBS[parts[1]], {"ETag": f"\"{parts[1]}\""})

    def handle_api(self, parts):
        found = self.find_repo(parts)
        if found is None or found[1] is None:
            return self.error(404, "RepoNotFound", "Repository not found")
        repo_id, repo, rest = found
        if repo.renamed_to:
            return self.send(307, b"", {"Location": "/api/models/" + repo.renamed_to + ("/" + "/".join(rest) if rest else "")})
        if not self.authorized(repo):
            return self.error(401, "GatedRepo", f"Access to model {repo_id} is restricted. Please log in.")
        if not rest:
            rest = ["revision", "main"]
        if len(rest) < 2 or rest[0] not in ("revision", "tree"):
            return self.error(404, "EntryNotFound", "unknown API path")
        revision = unquote(rest[1])
        commit = repo.resolve(revision)
        if commit is None:
            return self.error(404, "RevisionNotFound", "Invalid rev id: " + revision)
        files = repo.files(commit)
        if rest[0] == "revision":
            body = {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                    "gated": "auto" if repo.gated_token else False, "disabled": False, "downloads": 0, "likes": 0,
                    "tags": ["diffusers"], "library_name": "diffusers",
                    "siblings": [{"rfilename": p} for p in sorted(files)]}
            return self.send(200, json.dumps(body).encode())
        prefix = unquote("/".join(rest[2:]))
        entries, dirs = [], set()
        for p in sorted(files):
            if prefix and not p.startswith(prefix + "/"):
                continue
            info = files[p]
            entry = {"type": "file", "oid": info["oid"], "size": info["size"], "path": p}
            if "sha256" in info:
                entry["lfs"] = {"oid": info["sha256"], "size": info["size"], "pointerSize": 134}
            entries.append(entry)
            folders = p.split("/")[:-1]
            for i in range(1, len(folders) + 1):
                dirs.add("/".join(folders[:i]))
        entries += [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                    for d in sorted(dirs) if not prefix or d.startswith(prefix + "/")]
        self.send(200, json.dumps(entries).encode())


class CDNHandler(Handler):
    server_role = "cdn"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    REPOS.update(load_repos(sys.argv[1]))
    hub = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    cdn = ThreadingHTTPServer(("127.0.0.1", 0), CDNHandler)
    hub.daemon_threads = cdn.daemon_threads = True
    CDN_PORT[0] = cdn.server_address[1]
    print(hub.server_address[1], flush=True)
    print(cdn.server_address[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
