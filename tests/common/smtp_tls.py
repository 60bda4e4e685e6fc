"""A small SMTP server with real TLS for cairn's tests: STARTTLS (default) or
implicit TLS (--implicit). It offers AUTH only over TLS, refuses MAIL before
TLS, and writes each message as JSON into --out. Prints its port, then serves
until killed. Python standard library only."""
import argparse, base64, json, os, socket, ssl, threading

p = argparse.ArgumentParser()
p.add_argument("--cert", required=True)
p.add_argument("--key", required=True)
p.add_argument("--out", required=True)
p.add_argument("--implicit", action="store_true")
args = p.parse_args()

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(args.cert, args.key)
counter = [0]
lock = threading.Lock()


def session(conn):
    tls = False
    if args.implicit:
        conn = context.wrap_socket(conn, server_side=True)
        tls = True
    f = conn.makefile("rb")
    send = lambda text: conn.sendall(text.encode())
    send("220 localhost ESMTP cairn-tls-test\r\n")
    mail = {"from": None, "recipients": [], "auth": None}
    while True:
        line = f.readline()
        if not line:
            return
        cmd = line.decode().rstrip("\r\n")
        up = cmd.upper()
        if up.startswith("EHLO"):
            caps = ["localhost", "8BITMIME"]
            caps += ["AUTH PLAIN"] if tls else ["STARTTLS"]
            send("".join(f"250-{c}\r\n" for c in caps[:-1]) + f"250 {caps[-1]}\r\n")
        elif up == "STARTTLS" and not tls:
            send("220 2.0.0 Ready to start TLS\r\n")
            conn = context.wrap_socket(conn, server_side=True)
            f = conn.makefile("rb")
            tls = True
        elif up.startswith("AUTH PLAIN") and tls:
            raw = base64.b64decode(cmd[10:].strip()).decode()
            mail["auth"] = raw.lstrip("\0")
            send("235 2.7.0 Authentication successful\r\n")
        elif up.startswith("MAIL FROM:"):
            if not tls:
                send("530 5.7.0 Must issue a STARTTLS command first\r\n")
                continue
            mail["from"] = cmd[10:].strip().strip("<>")
            send("250 2.1.0 Ok\r\n")
        elif up.startswith("RCPT TO:"):
            mail["recipients"].append(cmd[8:].strip().strip("<>"))
            send("250 2.1.5 Ok\r\n")
        elif up == "DATA":
            send("354 End data with <CR><LF>.<CR><LF>\r\n")
            data = b""
            while True:
                l = f.readline()
                if l in (b".\r\n", b".\n", b""):
                    break
                data += l[1:] if l.startswith(b"..") else l
            mail["data"] = data.decode(errors="replace")
            mail["tls"] = tls
            with lock:
                counter[0] += 1
                n = counter[0]
            path = os.path.join(args.out, f"{n:04}.json")
            with open(path + ".tmp", "w") as out:
                json.dump(mail, out)
            os.rename(path + ".tmp", path)
            mail = {"from": None, "recipients": [], "auth": mail["auth"]}
            send("250 2.0.0 Ok: queued\r\n")
        elif up == "QUIT":
            send("221 2.0.0 Bye\r\n")
            return
        elif up in ("RSET", "NOOP"):
            send("250 2.0.0 Ok\r\n")
        else:
            send("502 5.5.2 Command not recognized\r\n")


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(16)
print(server.getsockname()[1], flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=session, args=(conn,), daemon=True).start()
