package update

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// sector is the logical sector size of gokrazy images.
const sector = 512

// Image is a full gokrazy disk image (boards/image.sh output) opened for
// an update: the parts gokrazy's update protocol takes, located in the
// image's partition table.
type Image struct {
	Path    string
	Release string // from Path+".release", written by boards/image.sh
	f       *os.File
	// Boot is the whole boot (FAT) partition; Root the squashfs in
	// partition 2, cut at its bytes_used (the rest of the partition is
	// padding); MBR the boot code gokrazy's BIOS loader keeps in the first
	// 446 bytes (it holds the kernel's LBA, so it changes with the boot
	// partition).
	Boot, Root, MBR *io.SectionReader
}

// OpenImage opens path and locates its parts. Errors say what is wrong
// with the image and where.
func OpenImage(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	im := &Image{Path: path, f: f}
	if err := im.locate(); err != nil {
		f.Close()
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	rel, err := os.ReadFile(path + ".release")
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("image %s: release name (written by boards/image.sh): %w", path, err)
	}
	im.Release = string(bytes.TrimSpace(rel))
	if im.Release == "" {
		f.Close()
		return nil, fmt.Errorf("image %s: %s.release is empty", path, path)
	}
	return im, nil
}

// Close closes the image file.
func (im *Image) Close() error { return im.f.Close() }

// partition is a partition's extent in bytes.
type partition struct{ off, size int64 }

func (im *Image) locate() error {
	st, err := im.f.Stat()
	if err != nil {
		return err
	}
	parts, err := readPartitions(im.f, st.Size())
	if err != nil {
		return err
	}
	if len(parts) < 2 || parts[0].size == 0 || parts[1].size == 0 {
		return fmt.Errorf("partition table: want boot (1) and root (2) partitions, found %d", len(parts))
	}
	boot, root := parts[0], parts[1]
	var sb [48]byte
	if _, err := im.f.ReadAt(sb[:], root.off); err != nil {
		return fmt.Errorf("read root superblock at byte %d: %w", root.off, err)
	}
	if string(sb[0:4]) != "hsqs" {
		return fmt.Errorf("root partition (byte %d): no squashfs superblock (magic %q, want \"hsqs\")", root.off, sb[0:4])
	}
	used := int64(binary.LittleEndian.Uint64(sb[40:48]))
	if used <= 0 || used > root.size {
		return fmt.Errorf("root partition (byte %d): squashfs bytes_used %d outside the partition's %d bytes", root.off, used, root.size)
	}
	// Round up to 4 KiB, as gok's own root file system image is padded.
	used = min((used+4095)&^4095, root.size)
	im.Boot = io.NewSectionReader(im.f, boot.off, boot.size)
	im.Root = io.NewSectionReader(im.f, root.off, used)
	im.MBR = io.NewSectionReader(im.f, 0, 446)
	return nil
}

var errNoTable = errors.New("no partition table (MBR signature 0x55aa missing)")

// readPartitions returns the partitions of a GPT (behind its protective
// MBR) or plain MBR disk image, by number (index 0 is partition 1).
func readPartitions(r io.ReaderAt, size int64) ([]partition, error) {
	var mbr [sector]byte
	if _, err := r.ReadAt(mbr[:], 0); err != nil {
		return nil, fmt.Errorf("read MBR: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil, errNoTable
	}
	check := func(p partition, what string) error {
		if p.off < 0 || p.size < 0 || p.off+p.size > size {
			return fmt.Errorf("%s: bytes %d..%d lie outside the %d-byte image", what, p.off, p.off+p.size, size)
		}
		return nil
	}
	// A GPT disk has an 0xEE entry: alone (protective MBR) or, in gokrazy's
	// PC images, beside the boot partition (a hybrid MBR for BIOS boot).
	gpt := false
	for i := 0; i < 4; i++ {
		gpt = gpt || mbr[446+16*i+4] == 0xee
	}
	if !gpt {
		var parts []partition
		for i := 0; i < 4; i++ {
			e := mbr[446+16*i:]
			p := partition{int64(binary.LittleEndian.Uint32(e[8:])) * sector, int64(binary.LittleEndian.Uint32(e[12:])) * sector}
			if err := check(p, fmt.Sprintf("MBR partition %d", i+1)); err != nil {
				return nil, err
			}
			parts = append(parts, p)
		}
		return parts, nil
	}
	var hdr [92]byte
	if _, err := r.ReadAt(hdr[:], sector); err != nil {
		return nil, fmt.Errorf("read GPT header: %w", err)
	}
	if string(hdr[0:8]) != "EFI PART" {
		return nil, fmt.Errorf("protective MBR but no GPT header at LBA 1 (signature %q)", hdr[0:8])
	}
	entriesLBA := int64(binary.LittleEndian.Uint64(hdr[72:]))
	n := binary.LittleEndian.Uint32(hdr[80:])
	esize := binary.LittleEndian.Uint32(hdr[84:])
	if n == 0 || n > 1024 || esize < 128 || esize > 4096 {
		return nil, fmt.Errorf("GPT header: %d entries of %d bytes, want 1..1024 of 128..4096", n, esize)
	}
	buf := make([]byte, int(n)*int(esize))
	if _, err := r.ReadAt(buf, entriesLBA*sector); err != nil {
		return nil, fmt.Errorf("read GPT entries at LBA %d: %w", entriesLBA, err)
	}
	var parts []partition
	for i := 0; i < int(n); i++ {
		e := buf[i*int(esize):]
		if bytes.Equal(e[0:16], make([]byte, 16)) { // unused entry
			parts = append(parts, partition{})
			continue
		}
		first, last := int64(binary.LittleEndian.Uint64(e[32:])), int64(binary.LittleEndian.Uint64(e[40:]))
		if last < first {
			return nil, fmt.Errorf("GPT partition %d: last LBA %d before first LBA %d", i+1, last, first)
		}
		p := partition{first * sector, (last - first + 1) * sector}
		if err := check(p, fmt.Sprintf("GPT partition %d", i+1)); err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	for len(parts) > 0 && parts[len(parts)-1] == (partition{}) {
		parts = parts[:len(parts)-1]
	}
	return parts, nil
}

// testbootFlag makes gokrazy's init boot the inactive root partition once
// (maybeSwitchToInactive), rewriting cmdline.txt so that the next boot
// returns to the active one.
const testbootFlag = " gokrazy.try_boot_inactive=1"

// TestbootBoot returns the image's boot partition with testbootFlag in
// its kernel command lines (cmdline.txt, and the systemd-boot entry where
// there is one).
//
// gokrazy's own /update/testboot inserts the flag before the command
// line's newline, but gok writes cmdline.txt without one (the line is
// padded with 64 spaces for in-place edits), so on these images it
// silently does nothing; the QEMU update test caught this. The flag is
// therefore written into the padding here, before the boot partition is
// streamed; gokrazy's /update/bootonly then only rewrites root= to the
// running partition.
func (im *Image) TestbootBoot() ([]byte, error) {
	b := make([]byte, im.Boot.Size())
	if _, err := im.Boot.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read boot partition: %w", err)
	}
	n, err := insertTestboot(b)
	if err != nil {
		return nil, fmt.Errorf("image %s: boot partition: %w", im.Path, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("image %s: boot partition: no kernel command line (init=/gokrazy/init followed by padding) found", im.Path)
	}
	return b, nil
}

// insertTestboot writes testbootFlag into the padding after every gokrazy
// command line in b and returns how many it changed.
func insertTestboot(b []byte) (int, error) {
	marker := []byte("init=/gokrazy/init")
	pad := bytes.Repeat([]byte{' '}, len(testbootFlag)+8)
	n := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], marker)
		if i < 0 {
			return n, nil
		}
		start := off + i
		// The line ends at its padding, within a page of the marker.
		end := min(start+4096, len(b))
		j := bytes.Index(b[start:end], pad)
		if j < 0 {
			return n, fmt.Errorf("command line at byte %d has no padding for %q", start, testbootFlag)
		}
		line := b[start : start+j]
		if bytes.Contains(line, []byte(testbootFlag[1:])) {
			return n, fmt.Errorf("command line at byte %d already has %q", start, testbootFlag[1:])
		}
		if bytes.ContainsAny(line, "\x00\n") {
			return n, fmt.Errorf("command line at byte %d is not one line of text", start)
		}
		copy(b[start+j:], testbootFlag)
		n++
		off = start + j + len(testbootFlag)
	}
}
