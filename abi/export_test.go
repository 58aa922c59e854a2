package abi

import "github.com/anywasm/anywasm/engine"

// Groups returns the number of VM groups h holds (loaded code per vm_id).
func Groups(h *Host) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.groups)
}

// RootContexts returns the number of root contexts in the VMs of p's group.
func RootContexts(p *Plugin) int {
	g := p.group
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, v := range g.vms {
		v.mu.Lock()
		n += len(v.roots)
		v.mu.Unlock()
	}
	return n
}

// JitteredLowerBound is FailReload's interval for base.
var JitteredLowerBound = jitteredLowerBound

// KeyValue runs the pair reader of proxy_add_header_map_value on a VM
// whose memory is mem, with the same VM (and so the same table of pairs)
// for every call on one *PairReader.
type PairReader struct{ v *vm }

func NewPairReader(mem engine.Memory) *PairReader { return &PairReader{v: &vm{mem: mem}} }

func (r *PairReader) KeyValue(kp, kl, vp, vl uint32) (string, string, Status) {
	return r.v.keyValue([]uint64{0, uint64(kp), uint64(kl), uint64(vp), uint64(vl)})
}

// Chunk returns the bytes of the VM's chunk of pairs carved so far.
func (r *PairReader) Chunk() []byte { return r.v.pairs }

// VMs returns the number of VMs in p's group.
func VMs(p *Plugin) int {
	g := p.group
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.vms)
}

// The wire enums the hostcalls take, for the tests that drive hostcalls
// directly (embedders never see them).
type BufferType = bufferType

const (
	BufferHTTPRequestBody          = bufferHTTPRequestBody
	BufferHTTPResponseBody         = bufferHTTPResponseBody
	BufferDownstreamData           = bufferDownstreamData
	BufferUpstreamData             = bufferUpstreamData
	BufferHTTPCallResponseBody     = bufferHTTPCallResponseBody
	BufferGRPCReceiveBuffer        = bufferGRPCReceiveBuffer
	BufferVMConfiguration          = bufferVMConfiguration
	BufferPluginConfiguration      = bufferPluginConfiguration
	BufferForeignFunctionArguments = bufferForeignFunctionArguments
)
