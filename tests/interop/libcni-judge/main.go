// libcni-judge is an independent judge for CNI result-cache interop tests.
//
// It drives the real Go libcni (Debian's golang-github-appc-cni-dev), so
// Rust tests can check that cache files written by our libcni port are read
// correctly by Go libcni, and that files written by Go libcni are read
// correctly by ours. Usage:
//
//	libcni-judge add CNI_PATH CACHE_DIR CONFLIST CONTAINER_ID IFNAME NETNS [CNI_ARGS [CAP_ARGS_JSON]]
//	libcni-judge del CNI_PATH CACHE_DIR CONFLIST CONTAINER_ID IFNAME NETNS [CNI_ARGS [CAP_ARGS_JSON]]
//	libcni-judge read-cache CACHE_DIR CONFLIST CONTAINER_ID IFNAME
//
// CNI_PATH is colon-separated; CNI_ARGS is "k=v;k=v" (order kept); CAP_ARGS_JSON
// is a JSON object. Errors go to stderr with exit status 1.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "libcni-judge:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: libcni-judge add|del|read-cache ...")
	}
	switch cmd := args[0]; cmd {
	case "add", "del":
		if len(args) < 7 || len(args) > 9 {
			return fmt.Errorf("usage: %s CNI_PATH CACHE_DIR CONFLIST CONTAINER_ID IFNAME NETNS [CNI_ARGS [CAP_ARGS_JSON]]", cmd)
		}
		cni := libcni.NewCNIConfigWithCacheDir(strings.Split(args[1], ":"), args[2], nil)
		list, err := libcni.ConfListFromFile(args[3])
		if err != nil {
			return err
		}
		rt := &libcni.RuntimeConf{ContainerID: args[4], IfName: args[5], NetNS: args[6]}
		if len(args) > 7 {
			rt.Args = parseCNIArgs(args[7])
		}
		if len(args) > 8 && args[8] != "" {
			// UseNumber keeps numbers as written (no float64 round trip), so
			// the cache file shows exactly what libcni itself does with them.
			dec := json.NewDecoder(bytes.NewReader([]byte(args[8])))
			dec.UseNumber()
			if err := dec.Decode(&rt.CapabilityArgs); err != nil {
				return fmt.Errorf("capability args: %w", err)
			}
		}
		if cmd == "del" {
			return cni.DelNetworkList(context.Background(), list, rt)
		}
		result, err := cni.AddNetworkList(context.Background(), list, rt)
		if err != nil {
			return err
		}
		return printJSON(result)
	case "read-cache":
		if len(args) != 5 {
			return fmt.Errorf("usage: read-cache CACHE_DIR CONFLIST CONTAINER_ID IFNAME")
		}
		// Reading the cache never executes a plugin, so no CNI_PATH is needed.
		cni := libcni.NewCNIConfigWithCacheDir(nil, args[1], nil)
		list, err := libcni.ConfListFromFile(args[2])
		if err != nil {
			return err
		}
		rt := &libcni.RuntimeConf{ContainerID: args[3], IfName: args[4]}
		// Both return nil values without error when there is no cache file;
		// that shows up as JSON nulls below.
		result, err := cni.GetNetworkListCachedResult(list, rt)
		if err != nil {
			return fmt.Errorf("cached result: %w", err)
		}
		config, newRt, err := cni.GetNetworkListCachedConfig(list, rt)
		if err != nil {
			return fmt.Errorf("cached config: %w", err)
		}
		out := map[string]interface{}{"result": result, "config": nil, "rt": newRt}
		if config != nil {
			out["config"] = string(config)
		}
		return printJSON(out)
	default:
		return fmt.Errorf("unknown subcommand %q (want add, del or read-cache)", cmd)
	}
}

// parseCNIArgs turns "k=v;k=v" into libcni's ordered [][2]string, as
// runtimes do with CNI_ARGS. An empty string means no args (nil).
func parseCNIArgs(s string) [][2]string {
	var out [][2]string
	for _, pair := range strings.Split(s, ";") {
		if pair == "" {
			continue
		}
		kv := strings.SplitN(pair, "=", 2)
		if len(kv) == 1 {
			kv = append(kv, "")
		}
		out = append(out, [2]string{kv[0], kv[1]})
	}
	return out
}

// printJSON writes v as one line of compact JSON on stdout.
func printJSON(v interface{}) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", data)
	return err
}
