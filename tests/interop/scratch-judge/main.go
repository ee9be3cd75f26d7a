// scratch-judge is an independent judge for multus's scratch cache, <cniDir>/<containerID>: the
// delegates a pod's ADD ran, which its DEL reads back. It decodes and encodes the file with the
// struct upstream multus 4.2.1 uses (pkg/types.DelegateNetConf, written out below from its source
// layout) on Debian's libcni types, so tests check that Go multus reads the file our ADD wrote and
// that our DEL reads the file Go multus's ADD writes. Usage:
//
//	scratch-judge read FILE
//	    Prints, per entry, what Go multus sees: name, requests, whether it is a list, the plugin
//	    types of Conf/ConfList and of Bytes (what upstream's DEL re-loads). Unknown keys are errors.
//	scratch-judge write FILE CONF[:IFNAME]...
//	    Writes the array Go multus's ADD saves for these delegate config files (mode 0600).
//
// Errors go to stderr with exit status 1.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// DelegateNetConf is upstream's pkg/types.DelegateNetConf (4.2.1): the fields that are
// marshalled, with their tags. PortMappingsRequest, BandwidthRequest, MasterPlugin and
// ConfListPlugin are `json:"-"` upstream and so never in the file.
type DelegateNetConf struct {
	Conf                  types.NetConf
	ConfList              types.NetConfList
	Name                  string
	IfnameRequest         string    `json:"ifnameRequest,omitempty"`
	MacRequest            string    `json:"macRequest,omitempty"`
	InfinibandGUIDRequest string    `json:"infinibandGUIDRequest,omitempty"`
	IPRequest             []string  `json:"ipRequest,omitempty"`
	GatewayRequest        *[]net.IP `json:"default-route,omitempty"`
	IsFilterV4Gateway     bool
	IsFilterV6Gateway     bool
	DeviceID              string `json:"deviceID,omitempty"`
	ResourceName          string `json:"resourceName,omitempty"`
	Bytes                 []byte
}

type summary struct {
	Name       string   `json:"name"`
	Ifname     string   `json:"ifname"`
	Mac        string   `json:"mac"`
	IPs        []string `json:"ips"`
	Gateway    []string `json:"gateway"`
	IsList     bool     `json:"isList"`
	Types      []string `json:"types"`
	BytesTypes []string `json:"bytesTypes"`
	BytesName  string   `json:"bytesName"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "scratch-judge:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: scratch-judge read FILE | write FILE CONF[:IFNAME]...")
	}
	switch args[0] {
	case "read":
		return read(args[1])
	case "write":
		return write(args[1], args[2:])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func read(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var delegates []DelegateNetConf
	if err := dec.Decode(&delegates); err != nil {
		return fmt.Errorf("decoding %s as upstream's []DelegateNetConf: %v", file, err)
	}
	out := []summary{}
	for _, d := range delegates {
		s := summary{Name: d.Name, Ifname: d.IfnameRequest, Mac: d.MacRequest, IPs: d.IPRequest, IsList: len(d.ConfList.Plugins) > 0}
		if d.GatewayRequest != nil {
			for _, ip := range *d.GatewayRequest {
				s.Gateway = append(s.Gateway, ip.String())
			}
		}
		if s.IsList {
			for _, p := range d.ConfList.Plugins {
				s.Types = append(s.Types, p.Type)
			}
		} else {
			s.Types = []string{d.Conf.Type}
		}
		// What upstream's DEL loads from Bytes.
		if list, err := libcni.ConfListFromBytes(d.Bytes); err == nil && len(list.Plugins) > 0 {
			s.BytesName = list.Name
			for _, p := range list.Plugins {
				s.BytesTypes = append(s.BytesTypes, p.Network.Type)
			}
		} else if conf, err := libcni.ConfFromBytes(d.Bytes); err == nil {
			s.BytesName = conf.Network.Name
			s.BytesTypes = []string{conf.Network.Type}
		} else {
			return fmt.Errorf("entry %q: Bytes is no CNI config: %v", d.Name, err)
		}
		out = append(out, s)
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// write builds each entry as upstream's LoadDelegateNetConf does: a document with "plugins" is a
// list (ConfList), anything else a single config (Conf); Name from the config; Bytes verbatim.
func write(file string, confs []string) error {
	var delegates []DelegateNetConf
	for _, c := range confs {
		path, ifname := c, ""
		if i := strings.LastIndex(c, ":"); i >= 0 {
			path, ifname = c[:i], c[i+1:]
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		d := DelegateNetConf{Bytes: raw, IfnameRequest: ifname}
		var probe map[string]interface{}
		if err := json.Unmarshal(raw, &probe); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		if _, ok := probe["plugins"]; ok {
			if err := json.Unmarshal(raw, &d.ConfList); err != nil {
				return fmt.Errorf("%s: %v", path, err)
			}
			d.Name = d.ConfList.Name
		} else {
			if err := json.Unmarshal(raw, &d.Conf); err != nil {
				return fmt.Errorf("%s: %v", path, err)
			}
			d.Name = d.Conf.Name
		}
		delegates = append(delegates, d)
	}
	data, err := json.Marshal(delegates)
	if err != nil {
		return err
	}
	return os.WriteFile(file, data, 0o600)
}
