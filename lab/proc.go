package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stopGrace is how long a process gets between SIGTERM and SIGKILL.
const stopGrace = 2 * time.Second

// Process is a background process in a lab namespace, started by Up (the
// services) or by Host.Start. Down stops every tracked process.
type Process struct {
	PID       int
	StartTime uint64 // from /proc/<pid>/stat; tells the process from a later one with the same PID
	NS        string
	Role      string // host role
	Name      string // "dnsmasq", "httpd", or the command's base name
	Log       string // stdout and stderr go here

	cmd  *exec.Cmd     // nil when loaded from a state file
	done chan struct{} // closed when cmd.Wait returned
	err  error         // cmd.Wait's result, valid after done
}

func (p *Process) String() string {
	return fmt.Sprintf("%s on %s (pid %d, ns %s)", p.Name, p.Role, p.PID, p.NS)
}

// Alive reports whether the process is still running (zombies are dead).
func (p *Process) Alive() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	st, state, err := procStat(p.PID)
	if err != nil || state == 'Z' || state == 'X' {
		return false
	}
	return p.StartTime == 0 || st == p.StartTime
}

// Wait waits for a process started by this process to exit and returns
// its exit error. For a process loaded from a state file it polls until
// the process is gone and returns nil.
func (p *Process) Wait() error {
	if p.done != nil {
		<-p.done
		return p.err
	}
	for p.Alive() {
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Stop sends SIGTERM and, after a short grace, SIGKILL, and waits for the
// process to be gone. Stopping a dead process is not an error.
func (p *Process) Stop() error { return stopAll([]*Process{p}, stopGrace) }

// signal sends sig if the process is still the one that was started.
func (p *Process) signal(sig syscall.Signal) error {
	if !p.Alive() {
		return nil
	}
	if err := sendSignal(p.PID, sig); err != nil {
		return fmt.Errorf("signal %v to %v: %w", sig, p, err)
	}
	return nil
}

// stopAll terminates procs together: SIGTERM to all, SIGKILL after grace
// to the ones still alive, then waits a little for them to disappear.
func stopAll(procs []*Process, grace time.Duration) error {
	var errs []error
	for _, p := range procs {
		errs = append(errs, p.signal(syscall.SIGTERM))
	}
	waitGone := func(d time.Duration) []*Process {
		deadline := time.Now().Add(d)
		for {
			var alive []*Process
			for _, p := range procs {
				if p.Alive() {
					alive = append(alive, p)
				}
			}
			if len(alive) == 0 || time.Now().After(deadline) {
				return alive
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	alive := waitGone(grace)
	for _, p := range alive {
		errs = append(errs, p.signal(syscall.SIGKILL))
	}
	if len(alive) > 0 {
		for _, p := range waitGone(2 * time.Second) {
			errs = append(errs, fmt.Errorf("%v still alive after SIGKILL", p))
		}
	}
	return errors.Join(errs...)
}

// procStat returns the start time (field 22) and state (field 3) of pid.
func procStat(pid int) (uint64, byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return st, f[0][0], nil
}

func procStartTime(pid int) (uint64, error) {
	st, _, err := procStat(pid)
	return st, err
}

// Command returns a command that runs name inside the host's namespace
// through `ip netns exec` (which also mounts a /sys for that namespace).
// ctx kills it as in exec.CommandContext.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Run runs name inside the host's namespace and returns its combined
// output. The error names the command and the namespace and carries the
// tail of the output.
func (h *Host) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("run %q in %s: %w\n%s", strings.Join(append([]string{name}, args...), " "), h.NS, err, tail(string(out), 20))
	}
	return string(out), nil
}

// Start starts name in the background inside the host's namespace, with
// stdout and stderr in the lab's log directory (Process.Log). The process is
// tracked: Down stops it, and so does the end of ctx.
func (h *Host) Start(ctx context.Context, name string, args ...string) (*Process, error) {
	p, err := h.lab.start(h, filepath.Base(name), nil, name, args...)
	if err != nil {
		return nil, err
	}
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				p.Stop()
			case <-p.done:
			}
		}()
	}
	return p, nil
}

// start runs name in h's namespace in a session of its own (so it outlives
// the caller's terminal and the caller itself), logging to
// <Dir>/logs/<role>-<svc>.log, and tracks it.
func (l *Lab) start(h *Host, svc string, env []string, name string, args ...string) (*Process, error) {
	if h == nil || h.lab == nil {
		return nil, errors.New("start: host does not belong to a lab")
	}
	logPath := filepath.Join(l.logDir(), h.Role+"-"+svc+".log")
	for i := 2; ; i++ {
		if _, err := os.Stat(logPath); err != nil {
			break
		}
		logPath = filepath.Join(l.logDir(), fmt.Sprintf("%s-%s-%d.log", h.Role, svc, i))
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, h.NS, err)
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, h.NS, err)
	}
	// `ip netns exec` execs the command in place, so this PID is the
	// command's own.
	p := &Process{
		PID: cmd.Process.Pid, NS: h.NS, Role: h.Role, Name: svc, Log: logPath,
		cmd: cmd, done: make(chan struct{}),
	}
	p.StartTime, _ = procStartTime(p.PID)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	// Return only once the process is inside the namespace, so that a
	// namespace sweep (Down, Sweep) that runs right after Start finds it.
	waitEntered(p, h.NS, 5*time.Second)
	if err := l.track(p); err != nil {
		return p, err
	}
	return p, nil
}

// waitEntered waits until p's network namespace is ns (`ip netns exec`
// has called setns), p has exited, or timeout has passed.
func waitEntered(p *Process, ns string, timeout time.Duration) {
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, ns), &want); err != nil {
		return
	}
	link := fmt.Sprintf("net:[%d]", want.Ino)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && p.Alive() {
		if got, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.PID)); err == nil && got == link {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// logTail returns the last lines of a process's log.
func (p *Process) logTail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) == 0 {
		return "(log empty)"
	}
	return tail(string(b), n)
}
