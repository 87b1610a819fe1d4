package apiserver

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Op is what a Change does.
type Op int

// The operations of Change.
const (
	OpCreate Op = iota + 1
	OpUpdate
	OpDelete
)

func (o Op) String() string {
	switch o {
	case OpCreate:
		return "create"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// Change is one configuration change. Object is the new object for create
// and update (*evpndv1.Tenant, Segment, Port or Policy); for delete only its
// key fields are set.
type Change struct {
	Op     Op
	Object proto.Message
	// Generation, when not 0, must equal the stored one (update, delete).
	Generation int64
	// AllowMissing makes deleting a missing object succeed.
	AllowMissing bool
}

// FieldViolation is one invalid field of a refused object.
type FieldViolation struct {
	Field, Description string
}

// InvalidObject is the INVALID_ARGUMENT status for a refused object, with a
// google.rpc.BadRequest detail naming every bad field.
func InvalidObject(fvs []FieldViolation) error {
	var v violations
	for _, fv := range fvs {
		v.add(fv.Field, fv.Description)
	}
	if err := v.err(); err != nil {
		return err
	}
	return status.Error(codes.InvalidArgument, "invalid object")
}

// Errorf is a status error with code c.
func Errorf(c codes.Code, format string, args ...any) error {
	return status.Errorf(c, format, args...)
}
