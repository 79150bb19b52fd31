#!/usr/bin/env python3
"""A minimal client for `mlic meter serve` (docs/USAGE.md): ask before each batch whether the
licence allows this feature and this much more usage. Standard library only.

    mlic meter serve --model resnet --socket /run/mlic.sock &
    python3 examples/mlic_client.py /run/mlic.sock inferences 32 [feature]
"""
import json
import socket
import sys


class MlicMeter:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb", buffering=0)
        self.next_id = 0

    def request(self, **msg):
        self.next_id += 1
        msg["id"] = self.next_id
        self.file.write((json.dumps(msg) + "\n").encode())
        answer = json.loads(self.file.readline())
        assert answer.get("id") == self.next_id, answer
        return answer

    def validate(self, metric=None, quantity=None, feature=None, input_hash=None, output_hash=None):
        msg = {"op": "validate"}
        if metric is not None:
            msg["meter"] = {"metric": metric, "quantity": quantity}
        if feature is not None:
            msg["feature"] = feature
        if input_hash is not None:
            msg["inputHash"] = input_hash
        if output_hash is not None:
            msg["outputHash"] = output_hash
        return self.request(**msg)

    def close(self):
        self.file.close()
        self.sock.close()


if __name__ == "__main__":
    path, metric, quantity = sys.argv[1], sys.argv[2], int(sys.argv[3])
    feature = sys.argv[4] if len(sys.argv) > 4 else None
    m = MlicMeter(path)
    answer = m.validate(metric, quantity, feature)
    m.close()
    print(json.dumps(answer))
    result = answer.get("result", {})
    sys.exit(0 if answer.get("ok") and result.get("valid") else 1)
