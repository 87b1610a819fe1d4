package policy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// handleReader reads the handles of a chain's rules, in chain order.
type handleReader func(tbl *nftables.Table, chain string) ([]uint64, error)

// readHandles dumps the rules of one chain on nl (a NETLINK_NETFILTER
// socket in the tenant namespace) and returns their handles. It decodes
// only the handle of each rule: nftables.Conn.GetRules decodes every
// expression, which for a chain of a thousand rules costs milliseconds an
// incremental apply does not have.
func readHandles(nl *mnl.Conn, tbl *nftables.Table, chain string) ([]uint64, error) {
	all, err := dumpHandles(nl, tbl, chain)
	if err != nil {
		return nil, err
	}
	return all[chain], nil
}

// dumpHandles returns the handles of the rules of tbl by chain, in chain
// order: of one chain, or of all when chain is empty.
func dumpHandles(nl *mnl.Conn, tbl *nftables.Table, chain string) (map[string][]uint64, error) {
	attrs := []mnl.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: []byte(tbl.Name + "\x00")}}
	if chain != "" {
		attrs = append(attrs, mnl.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: []byte(chain + "\x00")})
	}
	data, err := mnl.MarshalAttributes(attrs)
	if err != nil {
		return nil, fmt.Errorf("table %s: encode rule dump: %w", tbl.Name, err)
	}
	req := mnl.Message{
		Header: mnl.Header{
			Type:  mnl.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: mnl.Request | mnl.Dump,
		},
		// nfgenmsg: family, version, resource id.
		Data: append([]byte{byte(tbl.Family), unix.NFNETLINK_V0, 0, 0}, data...),
	}
	msgs, err := nl.Execute(req)
	if err != nil {
		return nil, fmt.Errorf("table %s: dump rules: %w", tbl.Name, err)
	}
	out := map[string][]uint64{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := mnl.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("table %s: decode rule: %w", tbl.Name, err)
		}
		ad.ByteOrder = binary.BigEndian
		var handle uint64
		var table, ch string
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_HANDLE:
				handle = ad.Uint64()
			case unix.NFTA_RULE_CHAIN:
				ch = ad.String()
			case unix.NFTA_RULE_TABLE:
				table = ad.String()
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("table %s: decode rule: %w", tbl.Name, err)
		}
		// The kernel filters by table and chain; a rule of another one
		// would mean it did not, and its handles are not these.
		if handle == 0 || table != tbl.Name || chain != "" && ch != chain {
			return nil, fmt.Errorf("table %s: rule dump holds a rule of another chain or without handle", tbl.Name)
		}
		out[ch] = append(out[ch], handle)
	}
	return out, nil
}

// rawBatch sends rule deletions and insertions in one nftables batch on
// nl and returns the kernel handles of the inserted rules, in order. The
// kernel echoes every new rule, with its handle, to a sender that asks
// (NLM_F_ECHO), tagged with the sequence number of the request; the
// nftables package asks but drops the answer, so this batch goes out on
// evpnd's own socket. Knowing the handles, the engine need not read them
// back for the next change.
type rawBatch struct {
	family nftables.TableFamily
	table  string
	msgs   []mnl.Message
	isNew  []bool
	err    error
}

func (b *rawBatch) header(chain string) []mnl.Attribute {
	return []mnl.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte(b.table + "\x00")},
		{Type: unix.NFTA_RULE_CHAIN, Data: []byte(chain + "\x00")},
	}
}

func (b *rawBatch) add(typ uint16, flags mnl.HeaderFlags, attrs []mnl.Attribute, isNew bool) {
	data, err := mnl.MarshalAttributes(attrs)
	if err != nil {
		b.err = errors.Join(b.err, err)
		return
	}
	b.msgs = append(b.msgs, mnl.Message{
		Header: mnl.Header{Type: mnl.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), Flags: flags},
		Data:   append([]byte{byte(b.family), unix.NFNETLINK_V0, 0, 0}, data...),
	})
	b.isNew = append(b.isNew, isNew)
}

func (b *rawBatch) delRule(chain string, handle uint64) {
	b.add(unix.NFT_MSG_DELRULE, mnl.Request|mnl.Acknowledge,
		append(b.header(chain), mnl.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, handle)}), false)
}

// newRule appends the rule to the chain, or inserts it before the rule
// with handle before when that is not 0.
func (b *rawBatch) newRule(chain string, exprs []expr.Any, before uint64) {
	list := make([]mnl.Attribute, len(exprs))
	for i, e := range exprs {
		data, err := expr.Marshal(byte(b.family), e)
		if err != nil {
			b.err = errors.Join(b.err, fmt.Errorf("chain %s: %w", chain, err))
			return
		}
		list[i] = mnl.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: data}
	}
	nested, err := mnl.MarshalAttributes(list)
	if err != nil {
		b.err = errors.Join(b.err, err)
		return
	}
	attrs := append(b.header(chain), mnl.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: nested})
	flags := mnl.Request | mnl.Acknowledge | mnl.Create | mnl.HeaderFlags(unix.NLM_F_ECHO)
	if before != 0 {
		attrs = append(attrs, mnl.Attribute{Type: unix.NFTA_RULE_POSITION, Data: binary.BigEndian.AppendUint64(nil, before)})
	} else {
		flags |= mnl.HeaderFlags(unix.NLM_F_APPEND)
	}
	b.add(unix.NFT_MSG_NEWRULE, flags, attrs, true)
}

// commit sends the batch and waits for the kernel's answer to every
// message. Any error leaves nl in an unknown state: the caller must not
// use it again.
func (b *rawBatch) commit(nl *mnl.Conn) ([]uint64, error) {
	if b.err != nil {
		return nil, fmt.Errorf("encode rule changes: %w", b.err)
	}
	batchMsg := func(t uint16) mnl.Message {
		return mnl.Message{
			Header: mnl.Header{Type: mnl.HeaderType(t), Flags: mnl.Request},
			Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
		}
	}
	msgs := append([]mnl.Message{batchMsg(unix.NFNL_MSG_BATCH_BEGIN)}, b.msgs...)
	msgs = append(msgs, batchMsg(unix.NFNL_MSG_BATCH_END))
	sent, err := nl.SendMessages(msgs)
	if err != nil {
		return nil, fmt.Errorf("send rule changes: %w", err)
	}
	seqNew := map[uint32]int{}
	n := 0
	for i, isNew := range b.isNew {
		if isNew {
			seqNew[sent[i+1].Header.Sequence] = n
			n++
		}
	}
	handles := make([]uint64, n)
	echoed, acked := 0, 0
	if err := nl.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return nil, fmt.Errorf("rule changes: %w", err)
	}
	newRule := mnl.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE)
	for acked < len(b.msgs) || echoed < n {
		replies, err := nl.Receive()
		if err != nil {
			return nil, fmt.Errorf("apply rule changes: %w", err)
		}
		for _, m := range replies {
			switch m.Header.Type {
			case mnl.Error:
				acked++
			case newRule:
				i, ok := seqNew[m.Header.Sequence]
				if !ok || len(m.Data) < 4 {
					return nil, fmt.Errorf("apply rule changes: unexpected rule echo, sequence %d", m.Header.Sequence)
				}
				ad, err := mnl.NewAttributeDecoder(m.Data[4:])
				if err != nil {
					return nil, fmt.Errorf("apply rule changes: decode echo: %w", err)
				}
				ad.ByteOrder = binary.BigEndian
				for ad.Next() {
					if ad.Type() == unix.NFTA_RULE_HANDLE {
						handles[i] = ad.Uint64()
					}
				}
				if handles[i] == 0 {
					return nil, fmt.Errorf("apply rule changes: rule echo without handle")
				}
				delete(seqNew, m.Header.Sequence)
				echoed++
			}
		}
	}
	if err := nl.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("rule changes: %w", err)
	}
	return handles, nil
}
