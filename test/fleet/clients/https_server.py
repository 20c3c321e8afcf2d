#!/usr/bin/env python3
"""The control namespace's HTTPS server for the fleet: the app's git repository (git's dumb HTTP
protocol needs only files) and, for requests to the S3 endpoint's name, a minimal S3 API over a
directory (one subdirectory per bucket): enough of it for rclone's `sync bucket -> local`, which
is what backup.sh runs (ListObjects v1 and v2 with prefix and delimiter, GET and HEAD of a
bucket or an object). Signatures are not checked: the fleet's S3 stands in for a provider's
endpoint, and what the test proves is the backup and the restore, not S3's authentication.

usage: https_server.py ADDRESS CERT KEY GIT_ROOT S3_NAME S3_ROOT
"""
import functools
import hashlib
import http.server
import os
import ssl
import sys
import urllib.parse
from datetime import datetime, timezone
from xml.sax.saxutils import escape

address, cert, key, git_root, s3_name, s3_root = sys.argv[1:7]


def objects(bucket):
    """Every object of a bucket: key -> path, sorted by key (S3 lists in key order)."""
    base = os.path.join(s3_root, bucket)
    found = {}
    for directory, _, files in os.walk(base):
        for name in files:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, base).replace(os.sep, "/")] = path
    return dict(sorted(found.items()))


def etag(path):
    with open(path, "rb") as f:
        return '"%s"' % hashlib.md5(f.read()).hexdigest()


def modified(path):
    return datetime.fromtimestamp(os.path.getmtime(path), timezone.utc)


class Handler(http.server.SimpleHTTPRequestHandler):
    def is_s3(self):
        return self.headers.get("Host", "").split(":")[0] == s3_name

    def do_GET(self):
        if self.is_s3():
            self.s3(body=True)
        else:
            super().do_GET()

    def do_HEAD(self):
        if self.is_s3():
            self.s3(body=False)
        else:
            super().do_HEAD()

    def reply(self, status, payload=b"", content_type="application/xml", headers=(), body=True):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def s3(self, body):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        bucket, _, key = urllib.parse.unquote(url.path).lstrip("/").partition("/")
        if not bucket or not os.path.isdir(os.path.join(s3_root, bucket)):
            return self.reply(404, b"<Error><Code>NoSuchBucket</Code></Error>", body=body)
        if not key:
            return self.listing(bucket, query, body)
        path = objects(bucket).get(key)
        if path is None:
            return self.reply(404, b"<Error><Code>NoSuchKey</Code></Error>", body=body)
        with open(path, "rb") as f:
            data = f.read()
        stamp = modified(path).strftime("%a, %d %b %Y %H:%M:%S GMT")
        self.reply(200, data, "application/octet-stream", [("ETag", etag(path)), ("Last-Modified", stamp)], body)

    def listing(self, bucket, query, body):
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        contents, prefixes = [], []
        for name, path in objects(bucket).items():
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if delimiter and delimiter in rest:
                common = prefix + rest.split(delimiter, 1)[0] + delimiter
                if common not in prefixes:
                    prefixes.append(common)
                continue
            contents.append(
                "<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>%s</ETag><Size>%d</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
                % (escape(name), modified(path).strftime("%Y-%m-%dT%H:%M:%S.000Z"), escape(etag(path)), os.path.getsize(path))
            )
        version = ["<KeyCount>%d</KeyCount>" % (len(contents) + len(prefixes))] if query.get("list-type") == "2" else ["<Marker></Marker>"]
        xml = "".join(
            ['<?xml version="1.0" encoding="UTF-8"?>', '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">']
            + ["<Name>%s</Name><Prefix>%s</Prefix>" % (escape(bucket), escape(prefix))]
            + version
            + ["<MaxKeys>1000</MaxKeys>", "<Delimiter>%s</Delimiter>" % escape(delimiter) if delimiter else "", "<IsTruncated>false</IsTruncated>"]
            + contents
            + ["<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % escape(p) for p in prefixes]
            + ["</ListBucketResult>"]
        )
        self.reply(200, xml.encode(), body=body)


server = http.server.ThreadingHTTPServer((address, 443), functools.partial(Handler, directory=git_root))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
