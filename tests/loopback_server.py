"""A loopback HTTP server for the download tests: serves files from memory on 127.0.0.1 with HTTP Range support and
once-only faults. It stops with the test session (daemon threads) or on `close()`."""
import http.server
import threading
import time


class Server:
    """Serves `files` (name → bytes) with Range support. Once-only faults: `cut_after` bytes of a response are sent
    and then the connection is closed; `chunk_cut` sends that many bytes as one whole chunk of a chunked body, then
    part of the next chunk, then closes; `stall` sends that many bytes and then goes quiet for a second."""

    def __init__(self, files):
        self.files, self.cut_after, self.chunk_cut, self.stall, self.requests = files, None, None, None, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _close(self):
                self.wfile.flush()
                self.connection.shutdown(2)

            def do_GET(self):
                server.requests.append(dict(self.headers))
                quirk, _, name = self.path.lstrip("/").rpartition("/")
                if quirk == "garbage":
                    self.wfile.write(b"HELLO THERE\r\n\r\n")
                    self._close()
                    return
                if quirk == "redirect-ftp":
                    self.send_response(302)
                    self.send_header("Location", f"ftp://127.0.0.1:1/{name}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                if server.chunk_cut is not None:
                    cut, server.chunk_cut = server.chunk_cut, None
                    rest = len(body) - cut
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                    self.wfile.write(b"%x\r\n" % cut + body[:cut] + b"\r\n")
                    self.wfile.write(b"%x\r\n" % rest + body[cut:cut + min(10, rest - 1)])
                    self._close()
                    return
                start = 0
                if "Range" in self.headers:
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    payload = body[start:]
                    self.send_response(206)
                    if quirk == "whole206":  # ignores the range, but says so
                        payload = body
                        self.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(body)}")
                    elif quirk == "bare206":  # ignores the range and says nothing
                        payload = body
                    elif quirk == "shifted206":  # answers a range that starts elsewhere
                        payload = body[start - 5:]
                        self.send_header("Content-Range", f"bytes {start - 5}-{len(body) - 1}/{len(body)}")
                    elif quirk == "overrun206":  # sends more than its Content-Range announces
                        payload = body[start:] + b"EXTRA BYTES"
                        self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                    else:
                        self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    payload = body
                    self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if server.cut_after is not None:
                    payload, server.cut_after = payload[:server.cut_after], None
                    self.wfile.write(payload)
                    self._close()
                    return
                if server.stall is not None:
                    stall, server.stall = server.stall, None
                    self.wfile.write(payload[:stall])
                    self.wfile.flush()
                    time.sleep(1.0)  # longer than the client's timeout in the test
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
