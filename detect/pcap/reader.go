package pcap

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Packet is one captured packet.
type Packet struct {
	Time     time.Time
	Data     []byte          // captured bytes; a Reader reuses them at its next Next
	Length   int             // original length on the wire (more than len(Data) with a snap length)
	LinkType layers.LinkType // link-layer header of Data
	Ifindex  uint32          // ingress interface on the appliance; 0 (unknown) from files
	Offset   int64           // byte offset of the packet's record (pcapng: block) in its file
}

// Sentinel errors callers can branch on (errors.Is).
var (
	// ErrFormat: the file is neither pcap nor pcapng.
	ErrFormat = errors.New("not a pcap or pcapng file")
	// ErrLinkType: the capture's link-layer type is not supported.
	ErrLinkType = errors.New("unsupported link type")
)

// ReadError is a failure to read a capture file: which file, at which
// byte offset (the start of the record or block being read; in a gzip
// file, an offset in the decompressed stream), during which operation.
// Every packet before Offset has been delivered.
type ReadError struct {
	File   string
	Offset int64
	Op     string // e.g. "read packet record", "read pcapng block"
	Err    error
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("%s: %s at offset %d: %v", e.File, e.Op, e.Offset, e.Err)
}

func (e *ReadError) Unwrap() error { return e.Err }

// SupportedLinkType reports whether packets of link type lt can be
// decoded: Ethernet, Linux cooked (SLL, SLL2), raw IPv4/IPv6, BSD
// loopback (NULL, LOOP) and Cisco HDLC.
func SupportedLinkType(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
		layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6,
		layers.LinkTypeNull, layers.LinkTypeLoop, layers.LinkTypeC_HDLC:
		return true
	}
	return false
}

func linkTypeError(lt layers.LinkType) error {
	return fmt.Errorf("%w %s: supported are Ethernet, Linux SLL and SLL2, raw IPv4/IPv6, BSD loopback and Cisco HDLC",
		ErrLinkType, linkTypeName(lt))
}

// linkTypeName names a LINKTYPE_ value for errors (gopacket knows the
// names of the types it decodes only).
func linkTypeName(lt layers.LinkType) string {
	names := map[layers.LinkType]string{
		9: "PPP", 50: "PPP_HDLC", 104: "C_HDLC", 105: "IEEE802_11", 119: "PRISM_HEADER",
		127: "IEEE802_11_RADIOTAP", 143: "DOCSIS", 163: "IEEE802_11_AVS", 192: "PPI",
		195: "IEEE802_15_4", 220: "USB_LINUX_MMAPPED", 239: "NFLOG", 249: "NETLINK",
	}
	if n, ok := names[lt]; ok {
		return fmt.Sprintf("%d (LINKTYPE_%s)", uint16(lt), n)
	}
	if s := lt.String(); !strings.HasPrefix(s, "Unknown") {
		return fmt.Sprintf("%d (%s)", uint16(lt), s)
	}
	return fmt.Sprintf("%d (see https://www.tcpdump.org/linktypes.html)", uint16(lt))
}

// Magic numbers of the two formats.
const (
	magicPcapUsec = 0xa1b2c3d4
	magicPcapNsec = 0xa1b23c4d
	magicPcapng   = 0x0a0d0d0a
)

// readBufSize is the read buffer pcapgo works in: large enough that reads
// are few and most records sit whole in it (smaller for small files).
const readBufSize = 1 << 20

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Reader reads packets from one pcap or pcapng file (the format is told by
// its magic number; gzip-compressed files are read too) with
// gopacket/pcapgo. Next reuses its buffers: reading allocates nothing per
// packet (one exception: pcapgo boxes a pcapng packet's link type, which
// allocates for types above 255 such as Linux SLL2).
type Reader struct {
	name   string
	closer io.Closer
	size   int64           // file size, -1 if unknown
	file   *countingReader // bytes taken from the file (progress)
	stream *countingReader // bytes of the (decompressed) capture stream
	br     *bufio.Reader   // over stream: pcapgo reads from it (and uses it as is)
	ngBig  bool            // pcapng: the current section is big-endian
	pc     *pcapgo.Reader
	ng     *pcapgo.NgReader
	link   layers.LinkType // pcap: the file's link type
	pk     Packet
	err    error // sticky: the first error Next returned
}

// Open opens a capture file for reading.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError names the file and the operation
	}
	size := int64(-1)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	r, err := newReader(f, path, size)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// NewReader reads a capture from rd; name is used in errors. The caller
// closes rd.
func NewReader(rd io.Reader, name string) (*Reader, error) {
	return newReader(rd, name, -1)
}

func newReader(rd io.Reader, name string, size int64) (*Reader, error) {
	r := &Reader{name: name, size: size, file: &countingReader{r: rd}}
	r.stream = r.file
	// pcapgo uses a bufio.Reader of at least 4 kB as is, so Offset can
	// tell where pcapgo is from what it has left buffered. Small files get
	// small buffers: reading thousands of them (the corpus has 4000 scans
	// of a few kB) should not allocate a megabyte each.
	bufSize := readBufSize
	if size >= 0 {
		bufSize = int(min(max(size+1, 4096), readBufSize))
	}
	r.br = bufio.NewReaderSize(r.file, bufSize)
	if m, _ := r.br.Peek(2); len(m) == 2 && m[0] == 0x1f && m[1] == 0x8b {
		gz, err := gzip.NewReader(r.br)
		if err != nil {
			return nil, &ReadError{File: name, Op: "read gzip header", Err: err}
		}
		r.stream = &countingReader{r: gz}
		r.br = bufio.NewReaderSize(r.stream, readBufSize)
	}
	m, err := r.br.Peek(4)
	if err != nil {
		if err == io.EOF {
			err = fmt.Errorf("%w: file has %d bytes, too short for a file header", ErrFormat, len(m))
		}
		return nil, &ReadError{File: name, Op: "read file header", Err: err}
	}
	le, be := binary.LittleEndian.Uint32(m), binary.BigEndian.Uint32(m)
	switch {
	case le == magicPcapng:
		if h, err := r.br.Peek(12); err == nil {
			r.ngBig = binary.BigEndian.Uint32(h[8:]) == ngByteOrderMagic
		}
		ng, err := pcapgo.NewNgReader(r.br, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			return nil, r.headerError("read pcapng section header", err)
		}
		r.ng = ng
	case le == magicPcapUsec || be == magicPcapUsec || le == magicPcapNsec || be == magicPcapNsec:
		pc, err := pcapgo.NewReader(r.br)
		if err != nil {
			return nil, r.headerError("read pcap file header", err)
		}
		r.pc = pc
		r.link = pc.LinkType()
		if !SupportedLinkType(r.link) {
			return nil, &ReadError{File: name, Op: "read pcap file header", Offset: 0, Err: linkTypeError(r.link)}
		}
	default:
		return nil, &ReadError{File: name, Op: "read file header",
			Err: fmt.Errorf("%w (starts with % x)", ErrFormat, m)}
	}
	return r, nil
}

func (r *Reader) headerError(op string, err error) error {
	if err == io.EOF {
		err = fmt.Errorf("file header truncated: %w", io.ErrUnexpectedEOF)
	}
	return &ReadError{File: r.name, Op: op, Offset: 0, Err: err}
}

// Name returns the name the Reader was opened with.
func (r *Reader) Name() string { return r.name }

// Format returns "pcap" or "pcapng".
func (r *Reader) Format() string {
	if r.ng != nil {
		return "pcapng"
	}
	return "pcap"
}

// Size returns the file's size in bytes, or -1 if unknown.
func (r *Reader) Size() int64 { return r.size }

// BytesRead returns the bytes read from the file so far (ahead of the
// packets delivered by at most the read buffer): progress, not position.
func (r *Reader) BytesRead() int64 { return r.file.n }

// Offset returns the position in the capture stream after the last packet
// delivered.
func (r *Reader) Offset() int64 { return r.stream.n - int64(r.br.Buffered()) }

// Close closes the file if the Reader opened it.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	err := r.closer.Close()
	r.closer = nil
	return err
}

// Next returns the next packet, valid until the following call. At a clean
// end of the file it returns io.EOF; a damaged file ends with a
// *ReadError naming the offset of the record that could not be read. After
// an error, Next keeps returning it.
func (r *Reader) Next() (pk *Packet, err error) {
	if r.err != nil {
		return nil, r.err
	}
	start := r.Offset()
	defer func() {
		// pcapgo must not panic on any input; if a version does, the
		// file is reported as damaged instead of taking the process down.
		if v := recover(); v != nil {
			pk, err = nil, &ReadError{File: r.name, Offset: start, Op: "read packet", Err: fmt.Errorf("pcapgo panicked: %v", v)}
			r.err = err
		}
	}()
	var data []byte
	var ci gopacket.CaptureInfo
	lt := r.link
	pkOff := start
	if r.pc != nil {
		data, ci, err = r.pc.ZeroCopyReadPacketData()
	} else {
		pkOff = r.ngPacketOffset(start)
		data, ci, err = r.ng.ZeroCopyReadPacketData()
		if err == nil {
			// WantMixedLinkType: the packet's interface's link type.
			lt = layers.LinkType(0xffff)
			if len(ci.AncillaryData) > 0 {
				if v, ok := ci.AncillaryData[0].(layers.LinkType); ok {
					lt = v
				}
			}
			if !SupportedLinkType(lt) {
				err = fmt.Errorf("interface %d: %w", ci.InterfaceIndex, linkTypeError(lt))
			}
		}
	}
	if err != nil {
		r.err = r.readError(start, ci, err)
		return nil, r.err
	}
	r.pk = Packet{Time: ci.Timestamp, Data: data, Length: ci.Length, LinkType: lt, Offset: pkOff}
	return &r.pk, nil
}

// pcapng block types and the section header's byte-order magic.
const (
	ngBlockPacket    = 2
	ngBlockSimple    = 3
	ngBlockEnhanced  = 6
	ngBlockSection   = 0x0a0d0d0a
	ngByteOrderMagic = 0x1a2b3c4d
)

// ngPacketOffset finds where the next packet block starts, walking the
// blocks pcapgo is about to read (interface descriptions, statistics, ...)
// in its buffer, so that Packet.Offset names the packet's own block. It
// returns start when the walk cannot tell (a block longer than the buffer,
// a damaged length): then pcapgo reports the damage.
func (r *Reader) ngPacketOffset(start int64) int64 {
	off := 0
	for i := 0; i < 64; i++ {
		h, err := r.br.Peek(off + 12)
		if err != nil {
			return start
		}
		h = h[off:]
		typ := binary.LittleEndian.Uint32(h) // the section magic reads the same both ways
		if typ == ngBlockSection {
			r.ngBig = binary.BigEndian.Uint32(h[8:]) == ngByteOrderMagic
		}
		u32 := binary.LittleEndian.Uint32
		if r.ngBig {
			u32 = binary.BigEndian.Uint32
		}
		typ = u32(h)
		if typ == ngBlockEnhanced || typ == ngBlockSimple || typ == ngBlockPacket {
			return start + int64(off)
		}
		n := int(u32(h[4:]))
		if n < 12 || n%4 != 0 {
			return start
		}
		off += n
	}
	return start
}

// readError describes a failed read of the record at start.
func (r *Reader) readError(start int64, ci gopacket.CaptureInfo, err error) error {
	if err == io.EOF {
		return io.EOF
	}
	op := "read packet record"
	if r.ng != nil {
		op = "read pcapng block"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		got := r.Offset() - start
		switch {
		case r.ng != nil:
			err = fmt.Errorf("truncated: the file ends %d bytes into the block: %w", got, io.ErrUnexpectedEOF)
		case got < 16:
			err = fmt.Errorf("truncated record header (%d of 16 bytes): %w", got, io.ErrUnexpectedEOF)
		default:
			err = fmt.Errorf("truncated packet data (%d of %d captured bytes): %w", got-16, ci.CaptureLength, io.ErrUnexpectedEOF)
		}
	}
	return &ReadError{File: r.name, Offset: start, Op: op, Err: err}
}
