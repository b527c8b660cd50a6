"""A grpcio (PyPI) client of leda-cm's local API over its unix socket (issue 18).

grpcio's C core sends "localhost" for `unix:PATH`; the socket path itself as :authority
(what grpc-go and older C cores send) is asked for with grpc.default_authority. Messages are
encoded by hand (no generated stubs), field numbers from src/api/proto.

Usage: python3 client.py SOCKET IMAGE NAME   (one "ok ..." line per check; exit 1 on failure)
"""

import sys

import grpc

CONTAINERS = "/github.com.eclipse_kanto.container_management.containerm.api.services.containers.Containers/"
SYSINFO = "/github.com.eclipse_kanto.container_management.containerm.api.services.sysinfo.SystemInfo/"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, value):
    """A length-delimited field."""
    return varint(num << 3 | 2) + varint(len(value)) + value


def fields(msg, num):
    """The values of length-delimited field `num`."""
    out, i = [], 0
    while i < len(msg):
        key, shift = 0, 0
        while True:
            b = msg[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        n, t = key >> 3, key & 7
        if t == 0:
            while msg[i] & 0x80:
                i += 1
            i += 1
        elif t == 2:
            length, shift = 0, 0
            while True:
                b = msg[i]
                i += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if n == num:
                out.append(msg[i : i + length])
            i += length
        elif t == 1:
            i += 8
        elif t == 5:
            i += 4
        else:
            raise ValueError("bad wire type")
    return out


def string(msg, num):
    f = fields(msg, num)
    return f[-1].decode() if f else ""


def call(channel, method, request):
    return channel.unary_unary(method)(request, timeout=120)


def main():
    sock, image, name = sys.argv[1:4]
    plain = grpc.insecure_channel("unix:" + sock)
    as_path = grpc.insecure_channel("unix:" + sock, options=[("grpc.default_authority", sock)])

    info = fields(call(as_path, SYSINFO + "ProjectInfo", b""), 1)
    assert info and string(info[0], 3), "ProjectInfo without api_version"
    print(f"ok ProjectInfo api_version={string(info[0], 3)} (authority {sock!r})")

    container = field(2, name.encode()) + field(3, field(1, image.encode()))
    created = fields(call(as_path, CONTAINERS + "Create", field(1, container)), 1)
    assert created and string(created[0], 2) == name, "Create: no container named " + name
    cid = string(created[0], 1)
    print(f"ok Create id={cid}")

    got = fields(call(plain, CONTAINERS + "Get", field(1, cid.encode())), 1)
    assert got and string(got[0], 1) == cid, "Get: wrong container"
    assert string(fields(got[0], 3)[0], 1) == image, "Get: wrong image"
    print('ok Get over unix: (authority "localhost")')

    listed = [string(c, 1) for c in fields(call(as_path, CONTAINERS + "List", b""), 1)]
    assert cid in listed, "List: container missing"
    print("ok List")

    # Failures arrive as Kanto's daemon sends them: code Unknown, Kanto's text.
    for what, method, request, text in [
        (
            "Stop of a created container",
            "Stop",
            field(1, cid.encode()),
            f"cannot perform stop operation for container: {cid}, with state: Created",
        ),
        (
            "Start of an unknown ID",
            "Start",
            field(1, b"no-such-id"),
            "no such container with id = no-such-id exists",
        ),
    ]:
        try:
            call(plain, CONTAINERS + method, request)
        except grpc.RpcError as e:
            got = (e.code(), e.details())
            assert got == (grpc.StatusCode.UNKNOWN, text), f"{what}: {got}, want Unknown {text!r}"
        else:
            raise AssertionError(f"{what} succeeded")
        print(f"ok {what}: Unknown {text!r}")

    call(as_path, CONTAINERS + "Remove", field(1, cid.encode()) + b"\x10\x01")
    print("ok Remove")
    # As Kanto: OK, and no container in the answer.
    gone = call(as_path, CONTAINERS + "Get", field(1, cid.encode()))
    assert gone == b"" and not fields(gone, 1), f"Get of the removed container: {gone!r}"
    print("ok Get of the removed container: OK without a container")


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, grpc.RpcError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
