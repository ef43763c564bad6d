#!/usr/bin/env python3
"""A small Confluent-compatible schema registry for tests (no registry is
packaged for Debian 12): the subset of the REST API that producers and
@kafkajs/confluent-schema-registry call, kept in memory.

    schema_registry.py PORT [--refuse-file PATH]

  POST /subjects/{s}/versions      {"schema": text[, "schemaType": "AVRO"]} -> {"id": n}
                                   the same text under the same subject keeps its id;
                                   409 when the subject's compatibility refuses it
  POST /subjects/{s}               look a schema up: {"subject", "id", "version", "schema"} or 404
  GET  /subjects                   the subjects
  GET  /subjects/{s}/versions      their version numbers
  GET  /subjects/{s}/versions/{v}  v a number or "latest"
  GET  /schemas/ids/{id}           {"schema": text}
  GET|PUT /config[/{s}]            {"compatibilityLevel": NONE|BACKWARD|...}; GET of a
                                   subject without its own level is 404 (error 40408)

Compatibility is checked simply: BACKWARD (the default, as Confluent's) refuses a new
record schema that adds a field without a default or changes a field's type; NONE
accepts all. While the file named by --refuse-file exists, every registration is
refused with 409 and the file's text as the message (the bad-input tests).
Prints "ready" on stdout once it listens.
"""
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

CT = "application/vnd.schemaregistry.v1+json"
lock = threading.Lock()
schemas = []    # id - 1 -> text
ids = {}        # text -> id
subjects = {}   # subject -> [id, ...] (versions in order)
config = {"": "BACKWARD"}
refuse_file = None


def fields(text):
    try:
        s = json.loads(text)
    except ValueError:
        return None
    if isinstance(s, dict) and s.get("type") == "record":
        return {f["name"]: (json.dumps(f["type"], sort_keys=True), "default" in f) for f in s.get("fields", [])}
    return None


def compatible(subject, text):
    level = config.get(subject, config[""])
    if level == "NONE" or not subjects.get(subject):
        return None
    old = fields(schemas[subjects[subject][-1] - 1])
    new = fields(text)
    if old is None or new is None:
        return None
    for name, (ty, has_default) in new.items():
        if name not in old and not has_default:
            return f"field '{name}' is new and has no default ({level})"
        if name in old and old[name][0] != ty:
            return f"field '{name}' changed its type ({level})"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("registry: " + (fmt % args) + "\n")

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", CT)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, code, error_code, message):
        self.reply(code, {"error_code": error_code, "message": message})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return None

    def parts(self):
        return [unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]

    def do_GET(self):
        p = self.parts()
        with lock:
            if p == ["subjects"]:
                return self.reply(200, sorted(subjects))
            if len(p) == 3 and p[0] == "schemas" and p[1] == "ids" and p[2].isdigit():
                i = int(p[2])
                if 1 <= i <= len(schemas):
                    return self.reply(200, {"schema": schemas[i - 1]})
                return self.error(404, 40403, f"Schema {i} not found")
            if len(p) >= 3 and p[0] == "subjects" and p[2] == "versions":
                versions = subjects.get(p[1])
                if not versions:
                    return self.error(404, 40401, f"Subject '{p[1]}' not found.")
                if len(p) == 3:
                    return self.reply(200, list(range(1, len(versions) + 1)))
                v = len(versions) if p[3] == "latest" else int(p[3]) if p[3].isdigit() else 0
                if not 1 <= v <= len(versions):
                    return self.error(404, 40402, f"Version {p[3]} not found.")
                i = versions[v - 1]
                return self.reply(200, {"subject": p[1], "version": v, "id": i, "schema": schemas[i - 1]})
            if p == ["config"]:
                return self.reply(200, {"compatibilityLevel": config[""]})
            if len(p) == 2 and p[0] == "config":
                if p[1] not in config:
                    return self.error(404, 40408, f"Subject '{p[1]}' does not have subject-level compatibility configured")
                return self.reply(200, {"compatibilityLevel": config[p[1]]})
        self.error(404, 404, "Not found")

    def do_PUT(self):
        p = self.parts()
        b = self.body()
        if p and p[0] == "config" and len(p) <= 2 and isinstance(b, dict) and "compatibility" in b:
            level = b["compatibility"]
            if level not in ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
                             "FULL_TRANSITIVE"):
                return self.error(422, 42203, f"Invalid compatibility level {level}")
            with lock:
                config[p[1] if len(p) == 2 else ""] = level
            return self.reply(200, {"compatibility": level})
        self.error(404, 404, "Not found")

    def do_POST(self):
        p = self.parts()
        b = self.body()
        if len(p) < 2 or p[0] != "subjects" or not isinstance(b, dict) or not isinstance(b.get("schema"), str):
            return self.error(422, 42201, "Either the input schema or one its references is invalid")
        subject, text = p[1], b["schema"]
        try:
            json.loads(text)
        except ValueError:
            return self.error(422, 42201, "Input schema is an invalid Avro schema")
        with lock:
            if len(p) == 2:  # look up
                i = ids.get(text)
                versions = subjects.get(subject, [])
                if i is None or i not in versions:
                    return self.error(404, 40403, "Schema not found")
                return self.reply(200, {"subject": subject, "id": i, "version": versions.index(i) + 1, "schema": text})
            if len(p) != 3 or p[2] != "versions":
                return self.error(404, 404, "Not found")
            if refuse_file and os.path.exists(refuse_file):
                with open(refuse_file) as f:
                    msg = f.read().strip() or "refused"
                return self.error(409, 409, msg)
            versions = subjects.setdefault(subject, [])
            if text in ids and ids[text] in versions:
                return self.reply(200, {"id": ids[text]})
            problem = compatible(subject, text)
            if problem:
                return self.error(409, 409, f"Schema being registered is incompatible with an earlier schema for subject \"{subject}\": {problem}")
            if text not in ids:
                schemas.append(text)
                ids[text] = len(schemas)
            versions.append(ids[text])
            return self.reply(200, {"id": ids[text]})


def main():
    global refuse_file
    port = int(sys.argv[1])
    if len(sys.argv) == 4 and sys.argv[2] == "--refuse-file":
        refuse_file = sys.argv[3]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
