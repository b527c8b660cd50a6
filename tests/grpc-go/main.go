// A grpc-go client of leda-cm's local API, dialling its unix socket the way Kanto's own
// kanto-cm does: the socket's absolute path as the target, so grpc-go sends that path as
// the HTTP/2 :authority (issue 18). It also dials `unix:PATH` (authority "localhost") and
// with a percent-encoded path as the authority, as grpc-java does. Messages are encoded by
// hand with protowire (no generated stubs), field numbers from src/api/proto.
//
// Usage: grpc-go-client SOCKET IMAGE NAME
// Prints one "ok ..." line per check; exits 1 on the first failure.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	containers = "/github.com.eclipse_kanto.container_management.containerm.api.services.containers.Containers/"
	sysinfo    = "/github.com.eclipse_kanto.container_management.containerm.api.services.sysinfo.SystemInfo/"
)

// raw passes protobuf bytes as they are.
type raw struct{}

func (raw) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (raw) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (raw) Name() string { return "proto" }

var _ encoding.Codec = raw{}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// fields returns the values of field `num` (length-delimited) of a message.
func fields(msg []byte, num protowire.Number) [][]byte {
	var out [][]byte
	for len(msg) > 0 {
		n, t, l := protowire.ConsumeTag(msg)
		if l < 0 {
			fail("bad message")
		}
		msg = msg[l:]
		if t == protowire.BytesType {
			v, l := protowire.ConsumeBytes(msg)
			if l < 0 {
				fail("bad message")
			}
			if n == num {
				out = append(out, v)
			}
			msg = msg[l:]
		} else {
			l := protowire.ConsumeFieldValue(n, t, msg)
			if l < 0 {
				fail("bad message")
			}
			msg = msg[l:]
		}
	}
	return out
}

func str(msg []byte, num protowire.Number) string {
	f := fields(msg, num)
	if len(f) == 0 {
		return ""
	}
	return string(f[len(f)-1])
}

func bytesField(num protowire.Number, v []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func call(conn *grpc.ClientConn, method string, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var resp []byte
	err := conn.Invoke(ctx, method, &req, &resp, grpc.ForceCodec(raw{}))
	return resp, err
}

func must(conn *grpc.ClientConn, method string, req []byte) []byte {
	resp, err := call(conn, method, req)
	if err != nil {
		fail("%s: %v", method, err)
	}
	return resp
}

func dialKanto(sock string) *grpc.ClientConn {
	// As Kanto's kanto-cm: grpc.Dial with the path as target and a unix dialer.
	//nolint:staticcheck // grpc.Dial is what Kanto uses.
	conn, err := grpc.Dial(sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		fail("dial %s: %v", sock, err)
	}
	return conn
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: grpc-go-client SOCKET IMAGE NAME")
	}
	sock, image, name := os.Args[1], os.Args[2], os.Args[3]
	kanto := dialKanto(sock)
	defer kanto.Close()

	info := must(kanto, sysinfo+"ProjectInfo", nil)
	pi := fields(info, 1)
	if len(pi) != 1 || str(pi[0], 3) == "" {
		fail("ProjectInfo: no api_version in %x", info)
	}
	fmt.Printf("ok ProjectInfo api_version=%s (authority %q)\n", str(pi[0], 3), sock)
	// A figure, not a check: the round trip of a small call through the whole stack.
	const rounds = 200
	start := time.Now()
	for i := 0; i < rounds; i++ {
		must(kanto, sysinfo+"ProjectInfo", nil)
	}
	fmt.Printf("ok %d ProjectInfo calls, %v each\n", rounds, time.Since(start)/rounds)

	// Create (pulls the image), Get, List, Remove, Get of the removed one.
	container := append(bytesField(2, []byte(name)), bytesField(3, bytesField(1, []byte(image)))...)
	created := fields(must(kanto, containers+"Create", bytesField(1, container)), 1)
	if len(created) != 1 || str(created[0], 1) == "" || str(created[0], 2) != name {
		fail("Create: no container with an id and name %s", name)
	}
	id := str(created[0], 1)
	fmt.Printf("ok Create id=%s\n", id)

	got := fields(must(kanto, containers+"Get", bytesField(1, []byte(id))), 1)
	if len(got) != 1 || str(got[0], 1) != id || str(fields(got[0], 3)[0], 1) != image {
		fail("Get %s: wrong container", id)
	}
	fmt.Println("ok Get")

	listed := false
	for _, c := range fields(must(kanto, containers+"List", nil), 1) {
		listed = listed || str(c, 1) == id
	}
	if !listed {
		fail("List: %s missing", id)
	}
	fmt.Println("ok List")

	// The same through the other two ways clients dial.
	unix, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail("dial unix:%s: %v", sock, err)
	}
	defer unix.Close()
	must(unix, containers+"Get", bytesField(1, []byte(id)))
	fmt.Println("ok Get over unix: (authority \"localhost\")")
	//nolint:staticcheck
	pct, err := grpc.Dial(sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority("%2Frun%2Fcontainer-management%2Fcontainer-management.sock"),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		fail("dial %s: %v", sock, err)
	}
	defer pct.Close()
	must(pct, containers+"Get", bytesField(1, []byte(id)))
	fmt.Println("ok Get with a percent-encoded authority")

	// Failures arrive as Kanto's daemon sends them: code Unknown, Kanto's text.
	wantUnknown := func(what, method string, req []byte, text string) {
		_, err := call(kanto, containers+method, req)
		if s := status.Convert(err); s.Code() != codes.Unknown || s.Message() != text {
			fail("%s: %v, want code Unknown with %q", what, err, text)
		}
		fmt.Printf("ok %s: Unknown %q\n", what, text)
	}
	wantUnknown("Stop of a created container", "Stop", bytesField(1, []byte(id)),
		"cannot perform stop operation for container: "+id+", with state: Created")
	wantUnknown("Start of an unknown ID", "Start", bytesField(1, []byte("no-such-id")),
		"no such container with id = no-such-id exists")

	// A service the daemon does not serve: grpc-go's own answer.
	if _, err := call(kanto, "/no.such.Service/Call", nil); status.Code(err) != codes.Unimplemented ||
		status.Convert(err).Message() != "unknown service no.such.Service" {
		fail("unknown service: %v, want Unimplemented \"unknown service no.such.Service\"", err)
	}
	fmt.Println("ok unknown service: Unimplemented")
	wantMethod := "unknown method Nope for service " + containers[1:len(containers)-1]
	if _, err := call(kanto, containers+"Nope", nil); status.Code(err) != codes.Unimplemented ||
		status.Convert(err).Message() != wantMethod {
		fail("unknown method: %v, want Unimplemented %q", err, wantMethod)
	}
	fmt.Println("ok unknown method: Unimplemented")

	must(kanto, containers+"Remove", append(bytesField(1, []byte(id)), 0x10, 0x01))
	fmt.Println("ok Remove")
	// As Kanto: OK, and no container in the answer.
	gone, err := call(kanto, containers+"Get", bytesField(1, []byte(id)))
	if err != nil {
		fail("Get of the removed container: %v, want OK", err)
	}
	if len(fields(gone, 1)) != 0 || len(gone) != 0 {
		fail("Get of the removed container: answer %x, want no container", gone)
	}
	fmt.Println("ok Get of the removed container: OK without a container")
}
