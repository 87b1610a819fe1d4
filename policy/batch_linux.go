package policy

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// captureBatch runs queue on an nftables.Conn that talks to no kernel and
// returns the batch its Flush would have sent: google/nftables builds the
// messages, sendBatch sends them. The library asks the kernel to
// acknowledge every message and reads each answer with two system calls;
// for a ruleset of 16k kernel rules that reading cost more than the
// kernel's own work.
func captureBatch(queue func(c *nftables.Conn) error) ([]mnl.Message, error) {
	var msgs []mnl.Message
	c := &nftables.Conn{TestDial: func(req []mnl.Message) ([]mnl.Message, error) {
		switch {
		case req == nil:
			return nil, nil // the library waiting for acknowledgements
		case req[0].Header.Type != mnl.HeaderType(unix.NFNL_MSG_BATCH_BEGIN):
			return nil, errors.New("a query on the connection that only builds a batch")
		}
		msgs = append(msgs, req...)
		return nil, nil
	}}
	if err := queue(c); err != nil {
		return nil, err
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("encode nftables batch: %w", err)
	}
	return msgs, nil
}

// sendBatch sends a batch captured by captureBatch on nl, a
// NETLINK_NETFILTER socket in the tenant namespace, and waits for the
// kernel's verdict. Only the last message before the batch end asks for an
// acknowledgement: the kernel reports an error for any message whatever
// its flags, takes the batch whole or not at all, and answers messages in
// order, so that one acknowledgement closes the answers. Any error leaves
// nl with answers unread: the caller must dial again.
func sendBatch(nl *mnl.Conn, msgs []mnl.Message) error {
	if len(msgs) < 3 {
		return nil // begin and end only: nothing to change
	}
	last := len(msgs) - 2
	for i := range msgs {
		// google/nftables asks the kernel to echo every rule it adds, so
		// that Flush can read the new handles back. Nothing here reads
		// them (handles are learned later, see learnHandlesLater), and
		// the echo makes the kernel render each rule again as a message
		// and send it: a third of its commit at 16k rules.
		msgs[i].Header.Flags &^= unix.NLM_F_ECHO
		if i != last {
			msgs[i].Header.Flags &^= mnl.Acknowledge
		} else {
			msgs[i].Header.Flags |= mnl.Acknowledge
		}
	}
	sent, err := nl.SendMessages(msgs)
	if err != nil {
		return fmt.Errorf("send nftables batch: %w", err)
	}
	want := sent[last].Header.Sequence
	if err := nl.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return fmt.Errorf("nftables batch: %w", err)
	}
	for {
		replies, err := nl.Receive()
		if err != nil {
			return fmt.Errorf("nftables batch of %d messages: %w", len(msgs)-2, err)
		}
		for _, m := range replies {
			if m.Header.Type == mnl.Error && m.Header.Sequence == want {
				if err := nl.SetReadDeadline(time.Time{}); err != nil {
					return fmt.Errorf("nftables batch: %w", err)
				}
				return nil
			}
		}
	}
}

// dialBatchSocket opens the NETLINK_NETFILTER socket a tenant's batches
// and handle dumps go through, with buffers that take a whole ruleset.
func dialBatchSocket(ns int) (*mnl.Conn, error) {
	nl, err := mnl.Dial(unix.NETLINK_NETFILTER, &mnl.Config{NetNS: ns})
	if err != nil {
		return nil, err
	}
	if err := bigBuffers(nl); err != nil {
		nl.Close()
		return nil, err
	}
	return nl, nil
}
