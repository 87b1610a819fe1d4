package store

import (
	"strings"
	"testing"
)

func TestLockExcludesASecondHolder(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Lock(); err != nil {
		t.Fatalf("first lock: %v", err)
	}
	err = b.Lock()
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second lock: %v, want in use", err)
	}
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := b.Lock(); err != nil {
		t.Fatalf("lock after the holder let go: %v", err)
	}
	if err := b.Unlock(); err != nil {
		t.Fatal(err)
	}
}
