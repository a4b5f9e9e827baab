// Command udpload sends X-Ray daemon datagrams (header line + ~1 KB segment document) at a fixed
// rate, so that a sidecar benchmark measures the receiver rather than a Python sender.
//
// Each document has a unique 16-hex-digit id (first, first+1, ...) so the upstream can count what
// arrived. Datagrams go out in sendmmsg batches, paced every half millisecond against the wall
// clock; at the end it prints "sent N elapsed SECONDS".
//
//	GO111MODULE=off go build -o udpload ./bench/udpload
//	udpload -port 2000 -rate 40000 -seconds 10 -first 0
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const (
	header = `{"format":"json","version":1}` + "\n"
	batch  = 64
)

// document returns a valid segment document of about size bytes whose id is %016x of seq.
func document(seq uint64, size int) []byte {
	now := float64(time.Now().UnixNano()) / 1e9
	head := fmt.Sprintf(`{"name":"bench","id":"%016x","trace_id":"1-%08x-%024x",`+
		`"start_time":%.6f,"end_time":%.6f,"metadata":{"pad":"`,
		seq, uint64(now), seq, now, now+0.001)
	pad := size - len(head) - 3
	if pad < 0 {
		pad = 0
	}
	return []byte(header + head + strings.Repeat("x", pad) + `"}}`)
}

// setID rewrites the 16 hex digits of the id (at offset at) in place.
func setID(buf []byte, at int, seq uint64) {
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		buf[at+i] = hex[seq&15]
		seq >>= 4
	}
}

// sendmmsg is the system call number on the 64-bit architectures whose layout mmsghdr matches
// (Go's frozen syscall package does not name it); elsewhere the sender writes one datagram a call.
var sendmmsg = map[string]uintptr{"amd64": 307, "arm64": 269}[runtime.GOARCH]

// mmsghdr is struct mmsghdr from <sys/socket.h> on 64-bit Linux.
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
	_   [4]byte
}

// sender sends up to batch prepared datagrams per system call on a connected socket.
type sender struct {
	fd    int
	bufs  [batch][]byte
	iovs  [batch]syscall.Iovec
	msgs  [batch]mmsghdr
	idAt  int
	plain bool // sendmmsg unavailable: one write per datagram
}

func newSender(port, size int) (*sender, error) {
	conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return nil, err
	}
	file, err := conn.File() // a blocking duplicate of the socket, for raw system calls
	if err != nil {
		return nil, err
	}
	fd := int(file.Fd())
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<20)
	s := &sender{fd: fd, plain: sendmmsg == 0}
	template := document(0, size)
	s.idAt = strings.Index(string(template), `"id":"`) + len(`"id":"`)
	for i := range s.bufs {
		s.bufs[i] = append([]byte(nil), template...)
		s.iovs[i].Base = &s.bufs[i][0]
		s.iovs[i].SetLen(len(s.bufs[i]))
		s.msgs[i].hdr.Iov = &s.iovs[i]
		s.msgs[i].hdr.Iovlen = 1
	}
	return s, nil
}

// send sends n (<= batch) datagrams numbered seq..seq+n-1; returns how many the kernel took.
func (s *sender) send(seq uint64, n int) int {
	for i := 0; i < n; i++ {
		setID(s.bufs[i], s.idAt, seq+uint64(i))
	}
	if !s.plain {
		r, _, errno := syscall.Syscall6(sendmmsg, uintptr(s.fd),
			uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(n), 0, 0, 0)
		if errno == 0 {
			return int(r)
		}
		if errno != syscall.ENOSYS {
			return 0
		}
		s.plain = true
	}
	for i := 0; i < n; i++ {
		if _, err := syscall.Write(s.fd, s.bufs[i]); err != nil {
			return i
		}
	}
	return n
}

func main() {
	port := flag.Int("port", 2000, "UDP port on 127.0.0.1")
	rate := flag.Int("rate", 10000, "datagrams per second")
	seconds := flag.Float64("seconds", 10, "how long to send")
	first := flag.Uint64("first", 0, "id of the first document")
	size := flag.Int("size", 1000, "document size in bytes (the header line comes on top)")
	flag.Parse()
	s, err := newSender(*port, *size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "udpload:", err)
		os.Exit(2)
	}
	total := int(float64(*rate) * *seconds)
	sent, started := 0, time.Now()
	for sent < total {
		due := int(time.Since(started).Seconds()*float64(*rate)) + 1
		if due > total {
			due = total
		}
		for sent < due {
			n := due - sent
			if n > batch {
				n = batch
			}
			took := s.send(*first+uint64(sent), n)
			if took == 0 {
				break // socket buffer full (ENOBUFS): try again on the next tick
			}
			sent += took
		}
		time.Sleep(500 * time.Microsecond)
	}
	fmt.Printf("sent %d elapsed %.3f\n", sent, time.Since(started).Seconds())
}
