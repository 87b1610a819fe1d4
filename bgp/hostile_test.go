package bgp

import (
	"testing"

	gobgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

func TestProbeGoBGPShortType2(t *testing.T) {
	for typ := 1; typ <= 5; typ++ {
		var panics []int
		for l := 0; l <= 60; l++ {
			func() {
				defer func() {
					if r := recover(); r != nil {
						panics = append(panics, l)
					}
				}()
				b := append([]byte{byte(typ), byte(l)}, make([]byte, l)...)
				if l > 22 && typ == 2 { b[2+22] = 48 }
				n := &gobgp.EVPNNLRI{}
				_ = n.DecodeFromBytes(b[:len(b):len(b)])
			}()
		}
		t.Logf("type %d panics at lengths %v", typ, panics)
	}
}
