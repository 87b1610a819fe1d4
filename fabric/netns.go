package fabric

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// netnsDir is where named namespaces are bind-mounted, as `ip netns add`
// does, so that `ip netns exec` and other tools see evpnd's tenants.
const netnsDir = "/run/netns"

// openOrCreateNetns opens the named namespace, creating and bind-mounting
// it when it does not exist. created reports whether it was made now.
func openOrCreateNetns(name string) (ns netns.NsHandle, created bool, err error) {
	ns, err = netns.GetFromName(name)
	if err == nil {
		return ns, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return netns.None(), false, fmt.Errorf("open namespace %q: %w", name, err)
	}
	// NewNamed unshares the calling thread into the new namespace; it must
	// run on a locked thread that is moved back afterwards.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), false, fmt.Errorf("get thread namespace: %w", err)
	}
	defer orig.Close()
	ns, newErr := netns.NewNamed(name)
	if err := netns.Set(orig); err != nil {
		if ns.IsOpen() {
			ns.Close()
		}
		return netns.None(), false, errors.Join(newErr, fmt.Errorf("restore thread namespace: %w", err))
	}
	runtime.UnlockOSThread()
	if newErr != nil {
		return netns.None(), false, fmt.Errorf("create namespace %q: %w", name, newErr)
	}
	return ns, true, nil
}

// listNetns returns the names of bind-mounted namespaces starting with
// prefix.
func listNetns(prefix string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", netnsDir, err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// deleteNetns unmounts and removes a named namespace; the kernel destroys
// it (and the devices in it) once nothing holds it open.
func deleteNetns(name string) error {
	if err := netns.DeleteNamed(name); err != nil {
		if _, statErr := os.Stat(filepath.Join(netnsDir, name)); errors.Is(statErr, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete namespace %q: %w", name, err)
	}
	return nil
}
