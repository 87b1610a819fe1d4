package policybench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/evpnd/evpnd/policy"
)

// iperfServer is an iperf3 server in a workload namespace.
type iperfServer struct {
	cmd  *exec.Cmd
	done chan error
}

// startIperfServer runs iperf3 -s in namespace ns and waits until it
// listens on flowPort: it reads the server's own /proc/PID/net/tcp, which
// shows the sockets of the process's namespace.
func startIperfServer(ctx context.Context, iperf, ns string) (*iperfServer, error) {
	cmd := exec.Command("ip", "netns", "exec", ns, iperf, "-s", "-p", strconv.Itoa(flowPort))
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = nil, &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("iperf3 server in %s: %w", ns, err)
	}
	s := &iperfServer{cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if listening(cmd.Process.Pid, flowPort) {
			return s, nil
		}
		select {
		case err := <-s.done:
			s.done <- err
			return nil, fmt.Errorf("iperf3 server in %s exited: %v: %s", ns, err, strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
			s.stop()
			return nil, context.Cause(ctx)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("iperf3 server in %s: not listening on port %d after 5 s: %s", ns, flowPort, strings.TrimSpace(stderr.String()))
		}
	}
}

// listening reports whether the namespace of process pid has a TCP socket
// listening on port (state 0A in /proc/net/tcp{,6}).
func listening(pid, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"tcp", "tcp6"} {
		data, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(data)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "0A" {
				data.Close()
				return true
			}
		}
		data.Close()
	}
	return false
}

// stop ends the server this benchmark started.
func (s *iperfServer) stop() {
	s.cmd.Process.Kill()
	<-s.done
}

// iperfReport is the part of iperf3 -J output the benchmark reads.
type iperfReport struct {
	Error string `json:"error"`
	End   struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Bytes         uint64  `json:"bytes"`
		} `json:"sum_received"`
	} `json:"end"`
}

// iperfRun sends TCP from namespace ns to addr for d and returns the
// receiver's bits per second. Runs of 2 s and more leave out their first
// second (TCP slow start) from the figure.
func iperfRun(ctx context.Context, iperf, ns, addr string, d time.Duration) (float64, error) {
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	args := []string{"netns", "exec", ns, iperf, "-c", addr, "-p", strconv.Itoa(flowPort), "-t", strconv.Itoa(secs), "-J"}
	if secs >= 2 {
		args = append(args, "-O", "1")
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	if ctx.Err() != nil {
		return 0, context.Cause(ctx)
	}
	var rep iperfReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return 0, fmt.Errorf("iperf3 client in %s: %v: no json report: %w: %s", ns, runErr, err, strings.TrimSpace(stderr.String()))
	}
	if rep.Error != "" {
		return 0, fmt.Errorf("iperf3 client in %s: %s", ns, rep.Error)
	}
	if runErr != nil {
		return 0, fmt.Errorf("iperf3 client in %s: %w: %s", ns, runErr, strings.TrimSpace(stderr.String()))
	}
	if rep.End.SumReceived.Bytes == 0 {
		return 0, fmt.Errorf("iperf3 client in %s: no bytes received by %s", ns, addr)
	}
	return rep.End.SumReceived.BitsPerSecond, nil
}

// countRules counts the rules of evpnd's nftables tables in namespace ns,
// as the kernel holds them.
func countRules(ns netns.NsHandle) (int, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return 0, fmt.Errorf("nftables connection: %w", err)
	}
	n := 0
	var errs []error
	for _, f := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		chains, err := c.ListChainsOfTableFamily(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("list chains: %w", err))
			continue
		}
		for _, ch := range chains {
			if ch.Table.Name != policy.TableName {
				continue
			}
			rules, err := c.GetRules(ch.Table, ch)
			if err != nil {
				errs = append(errs, fmt.Errorf("chain %s: %w", ch.Name, err))
				continue
			}
			n += len(rules)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("count nftables rules: %w", err)
	}
	return n, nil
}

// countRunElements counts the elements of the runs of evpnd's inet table
// in namespace ns (see policy.RunPrefix): the rules the kernel holds as
// set elements rather than as rules, one per address and port span.
func countRunElements(ns netns.NsHandle) (int, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return 0, fmt.Errorf("nftables connection: %w", err)
	}
	sets, err := c.GetSets(&nftables.Table{Family: nftables.TableFamilyINet, Name: policy.TableName})
	if err != nil {
		return 0, fmt.Errorf("list sets: %w", err)
	}
	n := 0
	for _, s := range sets {
		if !strings.HasPrefix(s.Name, policy.RunPrefix) {
			continue
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return 0, fmt.Errorf("set %s: %w", s.Name, err)
		}
		n += len(elems)
	}
	return n, nil
}
