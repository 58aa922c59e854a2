package abi

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
