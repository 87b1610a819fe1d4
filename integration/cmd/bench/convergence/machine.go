package convergence

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine describes where the figures were measured; they mean little
// without it.
type Machine struct {
	CPU          string `json:"cpu"`
	Cores        int    `json:"cores"`
	MemoryBytes  uint64 `json:"memory_bytes"`
	Kernel       string `json:"kernel"`
	FRRVersion   string `json:"frr_version"`
	EvpndVersion string `json:"evpnd_version"`
	GoVersion    string `json:"go_version"` // the toolchain that built the benchmark
}

// DescribeMachine gathers Machine; what cannot be read is "unknown".
func DescribeMachine(opts Options) Machine {
	m := Machine{CPU: "unknown", Cores: runtime.NumCPU(), Kernel: "unknown", FRRVersion: "unknown", EvpndVersion: "unknown", GoVersion: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if v, ok := procField(data, "model name"); ok {
			m.CPU = v
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		if v, ok := procField(data, "MemTotal"); ok {
			if kb, err := strconv.ParseUint(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
				m.MemoryBytes = kb * 1024
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	// bgpd --version: "bgpd version 8.4.4" then copyright lines.
	if out, err := exec.Command("/usr/lib/frr/bgpd", "--version").Output(); err == nil {
		if first, _, _ := strings.Cut(string(out), "\n"); strings.Contains(first, "version") {
			m.FRRVersion = strings.TrimSpace(first[strings.LastIndex(first, "version")+len("version"):])
		}
	}
	// evpnd --version: "evpnd <version>".
	if out, err := exec.Command(evpndBin(opts), "--version").Output(); err == nil {
		m.EvpndVersion = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "evpnd"))
	}
	return m
}

// procField finds "key : value" in a /proc text file.
func procField(data []byte, key string) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
