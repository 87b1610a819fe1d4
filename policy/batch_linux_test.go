package policy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
)

// TestPrivilegedSendBatch sends batches captured from google/nftables
// with one acknowledgement each: a good batch is committed whole; one
// whose middle message the kernel refuses is refused whole, reported with
// the kernel's error at once (not after the read deadline), and leaves
// nothing behind.
func TestPrivilegedSendBatch(t *testing.T) {
	requireRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	name := "pb-" + hex.EncodeToString(b)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	nl := batchSocketAt(t, name)
	list := func() string {
		out, err := exec.Command("ip", "netns", "exec", name, "nft", "list", "tables").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list tables: %v: %s", err, out)
		}
		return string(out)
	}

	// A good batch: two tables, a chain and a thousand rules.
	msgs, err := captureBatch(func(c *nftables.Conn) error {
		for _, n := range []string{"ta", "tb"} {
			tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: n})
			ch := c.AddChain(&nftables.Chain{Name: "c", Table: tbl})
			for range 500 {
				c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: newRule().accept().exprs})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sendBatch(nl, msgs); err != nil {
		t.Fatalf("good batch: %v", err)
	}
	if got := list(); !strings.Contains(got, "table inet ta") || !strings.Contains(got, "table inet tb") {
		t.Fatalf("after the good batch the namespace holds:\n%s", got)
	}

	// A bad one: a new table, then a chain in a table that does not
	// exist, then another new table, the message acknowledged.
	msgs, err = captureBatch(func(c *nftables.Conn) error {
		c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "tc"})
		c.AddChain(&nftables.Chain{Name: "c", Table: &nftables.Table{Family: nftables.TableFamilyINet, Name: "missing"}})
		c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "td"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = sendBatch(nl, msgs)
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("bad batch: want ENOENT, got %v", err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("the refusal took %v: the answer was not read, the deadline was", waited)
	}
	if got := list(); strings.Contains(got, "table inet tc") || strings.Contains(got, "table inet td") {
		t.Fatalf("a refused batch left tables behind:\n%s", got)
	}

	// After a redial, the socket takes batches again.
	nl.Close()
	nl = batchSocketAt(t, name)
	msgs, err = captureBatch(func(c *nftables.Conn) error {
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "ta"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sendBatch(nl, msgs); err != nil {
		t.Fatal(err)
	}
	if got := list(); strings.Contains(got, "table inet ta") || !strings.Contains(got, "table inet tb") {
		t.Fatalf("after deleting ta the namespace holds:\n%s", got)
	}

	// A query on the builder is refused, not sent anywhere.
	if _, err := captureBatch(func(c *nftables.Conn) error {
		_, err := c.ListTables()
		return err
	}); err == nil {
		t.Error("a query on the batch builder succeeded")
	}
}
