package evpn

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func FuzzParseNLRI(f *testing.F) {
	for _, g := range goldenNLRIs {
		f.Add(mustHex(f, g.hex))
	}
	f.Add([]byte{0x04, 0x00})
	f.Add([]byte{0x02, 0x21})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, used, err := ParseNLRI(b)
		if err != nil {
			if errors.Is(err, ErrUnknownRouteType) && (used < 2 || used > len(b)) {
				t.Fatalf("unknown type consumed %d of %d bytes", used, len(b))
			}
			return
		}
		if used < 2 || used > len(b) {
			t.Fatalf("consumed %d of %d bytes", used, len(b))
		}
		out, err := MarshalNLRI(n)
		if err != nil {
			t.Fatalf("parsed %s but cannot marshal it: %v", n, err)
		}
		n2, used2, err := ParseNLRI(out)
		if err != nil {
			t.Fatalf("re-parse of %x: %v", out, err)
		}
		if used2 != len(out) || !reflect.DeepEqual(n, n2) {
			t.Fatalf("round trip:\n %#v\n %#v", n, n2)
		}
		if n.Key() != n2.Key() || n.String() != n2.String() {
			t.Fatalf("key or string changed in a round trip: %s", n)
		}
		// Only host bits of a type-5 prefix may differ from the input.
		if n.Type() != TypePrefix && !bytes.Equal(out, b[:used]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b[:used], out)
		}
	})
}

func FuzzParsePMSI(f *testing.F) {
	f.Add(mustHex(f, "0006 000064 c0000201"))
	f.Add(mustHex(f, "0106 abcdef 20010db8000000000000000000000001"))
	f.Add(mustHex(f, "0000 000005"))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePMSI(b)
		if err != nil {
			return
		}
		out := p.Marshal()
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
		}
		p2, err := ParsePMSI(out)
		if err != nil || p2 != p {
			t.Fatalf("round trip: %+v -> %+v, %v", p, p2, err)
		}
	})
}

func FuzzParseExtCommunities(f *testing.F) {
	f.Add(MarshalExtCommunities([]ExtCommunity{
		RTCommunity(NewRT0(65000, 100)), EncapCommunity(EncapVXLAN),
		MobilityCommunity(Mobility{Seq: 3, Sticky: true}), RouterMACCommunity([]byte{2, 0, 0, 0, 0, 1}),
	}))
	f.Add([]byte{0x06, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		ecs, err := ParseExtCommunities(b)
		if err != nil {
			return
		}
		if out := MarshalExtCommunities(ecs); !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
		}
		var r Route
		r.SetExtCommunities(ecs)
		for _, ec := range ecs {
			_ = ec.String()
		}
		// What the route kept must survive a second trip unchanged.
		var r2 Route
		r2.SetExtCommunities(r.ExtCommunities())
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("route communities changed:\n %+v\n %+v", r, r2)
		}
	})
}

func FuzzParseRD(f *testing.F) {
	for _, s := range []string{"10.0.0.1:5", "65000:4294967295", "4200000001:65535", "0:0", "x:1", "1.2.3.4:70000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rd, err := ParseRD(s)
		if err != nil {
			return
		}
		rd2, err := ParseRD(rd.String())
		if err != nil {
			t.Fatalf("ParseRD(%q) = %s, which does not parse: %v", s, rd, err)
		}
		if rd2 != rd {
			t.Fatalf("ParseRD(%q) = %x, re-parsed %x", s, rd[:], rd2[:])
		}
	})
}

func FuzzParseRT(f *testing.F) {
	for _, s := range []string{"65000:100", "10.0.0.1:7", "4200000001:100", "65535:4294967295", "1:1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rt, err := ParseRT(s)
		if err != nil {
			return
		}
		rt2, err := ParseRT(rt.String())
		if err != nil {
			t.Fatalf("ParseRT(%q) = %s, which does not parse: %v", s, rt, err)
		}
		if rt2 != rt {
			t.Fatalf("ParseRT(%q) = %x, re-parsed %x", s, rt[:], rt2[:])
		}
		_ = RTCommunity(rt).String()
	})
}
