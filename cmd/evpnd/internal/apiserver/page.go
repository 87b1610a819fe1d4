package apiserver

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// page is a validated page_size and page_token (AIP-158). Tokens are
// offsets into the sorted, filtered listing, bound to the filters they were
// issued for; rows added or removed between calls can shift a page by that
// many rows, which is what an offset cursor over live state can promise.
type page struct {
	offset int
	size   int    // 0: the rest of the listing
	filter uint64 // hash of the request without its paging fields
}

const tokenVersion = 1

// page validates the paging fields of req.
func (v *violations) page(size int32, token string, req proto.Message) page {
	p := page{size: int(size), filter: filterHash(req)}
	if size < 0 {
		v.add("page_size", fmt.Sprintf("%d must not be negative", size))
		p.size = 0
	}
	if token == "" {
		return p
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err == nil && len(b) > 9 && b[0] == tokenVersion && binary.BigEndian.Uint64(b[1:9]) == p.filter {
		off, n := binary.Uvarint(b[9:])
		if n == len(b)-9 && off > 0 && off <= 1<<31 {
			p.offset = int(off)
			return p
		}
	}
	v.add("page_token", fmt.Sprintf("%q is not a token this listing issued (was it issued for other filters?)", token))
	return p
}

func (p page) token(offset int) string {
	b := []byte{tokenVersion}
	b = binary.BigEndian.AppendUint64(b, p.filter)
	b = binary.AppendUvarint(b, uint64(offset))
	return base64.RawURLEncoding.EncodeToString(b)
}

// paginate cuts the page out of rows and returns the token of the next page,
// empty on the last one.
func paginate[T any](p page, rows []T) ([]T, string) {
	if p.offset > len(rows) {
		// The listing shrank since the token was issued: past its end is
		// an empty last page, not an error.
		return rows[:0], ""
	}
	rows = rows[p.offset:]
	if p.size == 0 || p.size >= len(rows) {
		return rows, ""
	}
	return rows[:p.size], p.token(p.offset + p.size)
}

// filterHash identifies a request's filters: the request with page_size and
// page_token cleared, marshalled deterministically.
func filterHash(req proto.Message) uint64 {
	m := proto.Clone(req).ProtoReflect()
	fields := m.Descriptor().Fields()
	for _, name := range []protoreflect.Name{"page_size", "page_token"} {
		if fd := fields.ByName(name); fd != nil {
			m.Clear(fd)
		}
	}
	h := fnv.New64a()
	// The message name keeps a token of one listing from passing for
	// another with equally empty filters.
	h.Write([]byte(m.Descriptor().FullName()))
	// Marshalling a request the server just decoded cannot fail; if it did,
	// the hash of the name alone still only makes tokens less specific.
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m.Interface())
	h.Write(b)
	return h.Sum64()
}
