package dataplane

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// CheckBPFFS returns an error unless dir exists on a bpffs mount.
func CheckBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("pin directory %s: %w (hint: create it on a bpffs, e.g. mount -t bpf bpf /sys/fs/bpf)", dir, err)
	}
	if uint32(st.Type) != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin directory %s is not on a bpffs (filesystem magic %#x); mount one with: mount -t bpf bpf <dir>", dir, st.Type)
	}
	return nil
}

// MountBPFFS makes sure mountpoint holds a bpffs, mounting one if it does
// not, and creates the pin directory dir below it. The daemon uses it with
// /sys/fs/bpf, which is not mounted on every system (gokrazy, our CI
// machines); tests mount a private one in a temporary directory.
func MountBPFFS(mountpoint, dir string) error {
	if err := os.MkdirAll(mountpoint, 0o700); err != nil {
		return fmt.Errorf("create bpffs mountpoint %s: %w", mountpoint, err)
	}
	if CheckBPFFS(mountpoint) != nil {
		if err := unix.Mount("bpf", mountpoint, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs at %s: %w", mountpoint, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create pin directory %s: %w", dir, err)
	}
	return CheckBPFFS(dir)
}
