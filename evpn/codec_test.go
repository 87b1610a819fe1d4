package evpn

import (
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

var (
	testRD  = NewRD1(netip.MustParseAddr("10.0.0.1"), 5)
	testESI = ESI{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99}
)

// The golden encodings are laid out field by field as in RFC 7432 s7.2 and
// s7.3 and RFC 9136 s3.1; every field has a distinct value so that a field
// written in the wrong place or order changes the bytes.
var goldenNLRIs = []struct {
	name string
	nlri NLRI
	hex  string
}{
	{
		name: "type2 mac+ipv4 two labels",
		nlri: &MACIP{
			RD: testRD, ESI: testESI, EthTag: 7,
			MAC:    net.HardwareAddr{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff},
			IP:     netip.MustParseAddr("10.1.1.1"),
			Labels: []VNI{100, 5000},
		},
		hex: "02 28" + // type 2, length 40
			" 0001 0a000001 0005" + // RD type 1 10.0.0.1:5
			" 00112233445566778899" + // ESI
			" 00000007" + // Ethernet tag
			" 30 aabbccddeeff" + // MAC length 48, MAC
			" 20 0a010101" + // IP length 32, IP
			" 000064" + // label 1 = VNI 100
			" 001388", // label 2 = VNI 5000
	},
	{
		name: "type2 mac only",
		nlri: &MACIP{
			RD:     NewRD0(65000, 42),
			MAC:    net.HardwareAddr{0x02, 0, 0, 0, 0, 1},
			Labels: []VNI{0xABCDEF},
		},
		hex: "02 21" + // length 33
			" 0000 fde8 0000002a" + // RD type 0 65000:42
			" 00000000000000000000" +
			" 00000000" +
			" 30 020000000001" +
			" 00" + // no IP
			" abcdef", // the full 24-bit VNI, not a 20-bit MPLS label
	},
	{
		name: "type2 mac+ipv6",
		nlri: &MACIP{
			RD:     testRD,
			MAC:    net.HardwareAddr{0x02, 0, 0, 0, 0, 2},
			IP:     netip.MustParseAddr("2001:db8::1"),
			Labels: []VNI{100},
		},
		hex: "02 31" + // 33 + 16 = 49
			" 0001 0a000001 0005" +
			" 00000000000000000000" +
			" 00000000" +
			" 30 020000000002" +
			" 80 20010db8000000000000000000000001" +
			" 000064",
	},
	{
		name: "type3 ipv4",
		nlri: &IMET{RD: testRD, EthTag: 9, Originator: netip.MustParseAddr("192.0.2.1")},
		hex: "03 11" + // type 3, length 17
			" 0001 0a000001 0005" +
			" 00000009" + // Ethernet tag
			" 20 c0000201", // originator length 32, address
	},
	{
		name: "type3 ipv6",
		nlri: &IMET{RD: testRD, Originator: netip.MustParseAddr("2001:db8::7")},
		hex: "03 1d" + // length 29
			" 0001 0a000001 0005" +
			" 00000000" +
			" 80 20010db8000000000000000000000007",
	},
	{
		name: "type5 ipv4",
		nlri: &Prefix{
			RD: testRD, ESI: testESI, EthTag: 3,
			Prefix:  netip.MustParsePrefix("10.11.12.0/24"),
			Gateway: netip.MustParseAddr("192.0.2.1"),
			Label:   1000000,
		},
		hex: "05 22" + // type 5, length 34
			" 0001 0a000001 0005" +
			" 00112233445566778899" + // ESI
			" 00000003" + // Ethernet tag
			" 18 0a0b0c00" + // prefix length 24, prefix
			" c0000201" + // gateway
			" 0f4240", // label = VNI 1000000
	},
	{
		name: "type5 ipv6 no gateway",
		nlri: &Prefix{
			RD:     testRD,
			Prefix: netip.MustParsePrefix("2001:db8:1::/48"),
			Label:  4000,
		},
		hex: "05 3a" + // length 58
			" 0001 0a000001 0005" +
			" 00000000000000000000" +
			" 00000000" +
			" 30 20010db8000100000000000000000000" +
			" 00000000000000000000000000000000" +
			" 000fa0",
	},
}

func TestMarshalNLRIGolden(t *testing.T) {
	for _, tt := range goldenNLRIs {
		t.Run(tt.name, func(t *testing.T) {
			want := mustHex(t, tt.hex)
			got, err := MarshalNLRI(tt.nlri)
			if err != nil {
				t.Fatalf("MarshalNLRI: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("MarshalNLRI:\n got %x\nwant %x", got, want)
			}
			if int(got[1]) != len(got)-2 {
				t.Fatalf("length octet %d, body is %d bytes", got[1], len(got)-2)
			}
		})
	}
}

func TestParseNLRIGolden(t *testing.T) {
	for _, tt := range goldenNLRIs {
		t.Run(tt.name, func(t *testing.T) {
			b := mustHex(t, tt.hex)
			// Trailing bytes belong to the next NLRI and must be left.
			got, n, err := ParseNLRI(append(b, 0x02, 0x00))
			if err != nil {
				t.Fatalf("ParseNLRI: %v", err)
			}
			if n != len(b) {
				t.Fatalf("consumed %d bytes, want %d", n, len(b))
			}
			if !reflect.DeepEqual(got, tt.nlri) {
				t.Fatalf("ParseNLRI:\n got %#v\nwant %#v", got, tt.nlri)
			}
			if got.Key() != tt.nlri.Key() || got.String() != tt.nlri.String() {
				t.Fatalf("key or string differ after parse: %s vs %s", got, tt.nlri)
			}
		})
	}
}

func TestNLRIRoundTrip(t *testing.T) {
	nlris := []NLRI{
		&MACIP{RD: NewRD2(4200000001, 7), MAC: net.HardwareAddr{1, 2, 3, 4, 5, 6}, IP: netip.MustParseAddr("::ffff:10.0.0.1"), Labels: []VNI{MaxVNI, 1}},
		&MACIP{RD: testRD, EthTag: 0xffffffff, MAC: net.HardwareAddr{1, 2, 3, 4, 5, 6}, Labels: []VNI{0}},
		&IMET{RD: NewRD0(1, 2), EthTag: 1, Originator: netip.MustParseAddr("10.9.8.7")},
		&Prefix{RD: testRD, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Label: 1},
		&Prefix{RD: testRD, Prefix: netip.MustParsePrefix("2001:db8::1/128"), Gateway: netip.MustParseAddr("2001:db8::2"), Label: 1},
	}
	var all []byte
	for _, n := range nlris {
		var err error
		all, err = AppendNLRI(all, n)
		if err != nil {
			t.Fatalf("AppendNLRI(%s): %v", n, err)
		}
	}
	for i, want := range nlris {
		got, n, err := ParseNLRI(all)
		if err != nil {
			t.Fatalf("nlri %d: ParseNLRI: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("nlri %d:\n got %#v\nwant %#v", i, got, want)
		}
		all = all[n:]
	}
	if len(all) != 0 {
		t.Fatalf("%d bytes left over", len(all))
	}
}

func TestParseNLRIErrors(t *testing.T) {
	type2 := mustHex(t, goldenNLRIs[0].hex)
	tests := []struct {
		name    string
		hex     string
		b       []byte
		wantErr string
	}{
		{name: "empty", hex: "", wantErr: "short buffer"},
		{name: "one byte", hex: "02", wantErr: "short buffer"},
		{name: "length beyond buffer", b: type2[:len(type2)-1], wantErr: "length 40 exceeds the 39 bytes left"},
		{name: "type2 too short", hex: "02 05 0001 0a000001", wantErr: "shorter than the minimum"},
		{name: "type2 mac length", b: patch(type2, 2+22, 47), wantErr: "mac length 47 bits, want 48"},
		{name: "type2 ip length", b: patch(type2, 2+29, 24), wantErr: "ip length 24 bits, want 0, 32 or 128"},
		{name: "type2 ip length 128 in short body", b: patch(type2, 2+29, 128), wantErr: "does not fit a 128-bit ip"},
		{name: "type2 three labels", b: append(patch(type2, 1, 43), 0, 0, 1), wantErr: "does not fit a 32-bit ip and one or two labels"},
		{name: "type2 partial label", b: append(patch(type2, 1, 41), 0), wantErr: "one or two labels"},
		{name: "type3 ip length", hex: "03 11 0001 0a000001 0005 00000000 18 c0000201", wantErr: "originator ip length 24 bits, want 32 or 128"},
		{name: "type3 no ip", hex: "03 0d 0001 0a000001 0005 00000000 00", wantErr: "want 32 or 128"},
		{name: "type3 length mismatch", hex: "03 12 0001 0a000001 0005 00000000 20 c000020100", wantErr: "does not match a 32-bit originator"},
		{name: "type3 short", hex: "03 04 00010a00", wantErr: "shorter than the minimum"},
		{name: "type5 length", hex: "05 01 00", wantErr: "length 1, want 34 (ipv4) or 58 (ipv6)"},
		{name: "type5 prefix length", b: patch(mustHex(t, goldenNLRIs[5].hex), 2+22, 33), wantErr: "prefix length 33 exceeds 32 bits"},
		{name: "unknown type", hex: "04 00", wantErr: "route type 4: unknown route type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b
			if b == nil {
				b = mustHex(t, tt.hex)
			}
			n, _, err := ParseNLRI(b)
			if err == nil {
				t.Fatalf("ParseNLRI(%x) = %v, want error containing %q", b, n, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseNLRI(%x) error %q, want it to contain %q", b, err, tt.wantErr)
			}
		})
	}
}

func TestParseNLRIUnknownTypeSkips(t *testing.T) {
	b := mustHex(t, "01 03 aabbcc"+goldenNLRIs[3].hex)
	_, n, err := ParseNLRI(b)
	if !errors.Is(err, ErrUnknownRouteType) {
		t.Fatalf("error %v, want ErrUnknownRouteType", err)
	}
	if n != 5 {
		t.Fatalf("consumed %d, want 5 to skip the unknown nlri", n)
	}
	got, _, err := ParseNLRI(b[n:])
	if err != nil || got.Type() != TypeIMET {
		t.Fatalf("next nlri: %v, %v", got, err)
	}
}

// patch returns a copy of b with b[i] = v.
func patch(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}

func TestMarshalNLRIErrors(t *testing.T) {
	mac := net.HardwareAddr{1, 2, 3, 4, 5, 6}
	tests := []struct {
		name    string
		nlri    NLRI
		wantErr string
	}{
		{"nil", nil, "nil nlri"},
		{"typed nil", (*MACIP)(nil), "nil macip"},
		{"short mac", &MACIP{MAC: mac[:5], Labels: []VNI{1}}, "mac must be 6 bytes"},
		{"no labels", &MACIP{MAC: mac}, "want 1 or 2 labels, have 0"},
		{"three labels", &MACIP{MAC: mac, Labels: []VNI{1, 2, 3}}, "want 1 or 2 labels, have 3"},
		{"label too big", &MACIP{MAC: mac, Labels: []VNI{MaxVNI + 1}}, "does not fit in 24 bits"},
		{"imet no originator", &IMET{}, "no originator"},
		{"prefix invalid", &Prefix{}, "invalid prefix"},
		{"prefix gateway family", &Prefix{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Gateway: netip.MustParseAddr("::1")}, "not of the prefix's address family"},
		{"prefix label", &Prefix{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Label: MaxVNI + 1}, "does not fit in 24 bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := MarshalNLRI(tt.nlri)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("MarshalNLRI error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNLRIStringAndKey(t *testing.T) {
	mac := net.HardwareAddr{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	tests := []struct {
		nlri NLRI
		want string
	}{
		{&MACIP{RD: testRD, MAC: mac, IP: netip.MustParseAddr("10.1.1.1")}, "10.0.0.1:5 [2]:[0]:[48]:[aa:bb:cc:dd:ee:ff]:[32]:[10.1.1.1]"},
		{&MACIP{RD: testRD, MAC: mac}, "10.0.0.1:5 [2]:[0]:[48]:[aa:bb:cc:dd:ee:ff]"},
		{&MACIP{RD: testRD, MAC: mac, IP: netip.MustParseAddr("2001:db8::1")}, "10.0.0.1:5 [2]:[0]:[48]:[aa:bb:cc:dd:ee:ff]:[128]:[2001:db8::1]"},
		{&IMET{RD: NewRD0(65000, 100), Originator: netip.MustParseAddr("10.0.0.2")}, "65000:100 [3]:[0]:[32]:[10.0.0.2]"},
		{&Prefix{RD: testRD, Prefix: netip.MustParsePrefix("10.1.0.0/16")}, "10.0.0.1:5 [5]:[0]:[16]:[10.1.0.0]"},
	}
	for _, tt := range tests {
		if got := tt.nlri.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}

	// Keys: the identity is RD + key fields; labels and ESI are not in it.
	a := &MACIP{RD: testRD, MAC: mac, IP: netip.MustParseAddr("10.1.1.1"), Labels: []VNI{1}}
	b := &MACIP{RD: testRD, ESI: testESI, MAC: mac, IP: netip.MustParseAddr("10.1.1.1"), Labels: []VNI{2, 3}}
	if a.Key() != b.Key() {
		t.Error("labels or ESI changed the type-2 key")
	}
	distinct := []NLRI{
		a,
		&MACIP{RD: NewRD1(netip.MustParseAddr("10.0.0.2"), 5), MAC: mac, IP: netip.MustParseAddr("10.1.1.1")},
		&MACIP{RD: testRD, EthTag: 1, MAC: mac, IP: netip.MustParseAddr("10.1.1.1")},
		&MACIP{RD: testRD, MAC: mac},
		&MACIP{RD: testRD, MAC: mac, IP: netip.MustParseAddr("::ffff:10.1.1.1")},
		&MACIP{RD: testRD, MAC: net.HardwareAddr{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0}, IP: netip.MustParseAddr("10.1.1.1")},
		&IMET{RD: testRD, Originator: netip.MustParseAddr("10.1.1.1")},
		&IMET{RD: testRD, EthTag: 1, Originator: netip.MustParseAddr("10.1.1.1")},
		&Prefix{RD: testRD, Prefix: netip.MustParsePrefix("10.1.1.0/24")},
		&Prefix{RD: testRD, Prefix: netip.MustParsePrefix("10.1.1.0/25")},
	}
	seen := map[string]NLRI{}
	for _, n := range distinct {
		if prev, ok := seen[n.Key()]; ok {
			t.Errorf("%s and %s share a key", prev, n)
		}
		seen[n.Key()] = n
	}
	p1 := &Prefix{RD: testRD, Prefix: netip.MustParsePrefix("10.1.1.7/24"), Label: 1}
	p2 := &Prefix{RD: testRD, Prefix: netip.MustParsePrefix("10.1.1.0/24"), Gateway: netip.MustParseAddr("10.0.0.1"), Label: 2}
	if p1.Key() != p2.Key() {
		t.Error("host bits, gateway or label changed the type-5 key")
	}
}
