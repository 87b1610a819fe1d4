package lab

import (
	"os"
	"strings"
	"testing"
)

func TestCapMask(t *testing.T) {
	got, err := capMask((&Node{Labels: map[string]string{LabelCapabilities: " NET_ADMIN, net_bind_service,sys_admin "}}).Capabilities())
	if err != nil {
		t.Fatal(err)
	}
	// CAP_NET_BIND_SERVICE 10, CAP_NET_ADMIN 12, CAP_SYS_ADMIN 21.
	if want := uint64(1<<10 | 1<<12 | 1<<21); got != want {
		t.Errorf("mask %#x, want %#x", got, want)
	}
	if _, err := capMask([]string{"net_admin", "cap_chown"}); err == nil || !strings.Contains(err.Error(), `"cap_chown"`) {
		t.Errorf("unknown capability: %v", err)
	}
	if c := (&Node{Labels: map[string]string{}}).Capabilities(); c != nil {
		t.Errorf("no label: %v, want nil (all of root's)", c)
	}
}

func TestEffectiveCaps(t *testing.T) {
	got, err := effectiveCaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && got&(1<<12) == 0 {
		t.Errorf("root test process without CAP_NET_ADMIN: CapEff %#x", got)
	}
}
