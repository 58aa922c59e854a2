package abi

import (
	"context"
	"slices"
	"sync"
)

// sharedStore is the shared data of one vm_id: key -> value with a CAS
// counter, visible to every VM of every plugin with that vm_id.
type sharedStore struct {
	mu    sync.Mutex
	data  map[string]sharedValue
	cas   uint32
	bytes int // keys and values (Limits.MaxSharedDataBytes)
}

type sharedValue struct {
	value []byte
	cas   uint32
}

func newSharedStore() *sharedStore { return &sharedStore{data: map[string]sharedValue{}} }

func (v *vm) hGetSharedData(ctx context.Context, s []uint64) Status {
	key, ok := v.bytes(s[0], s[1])
	if !ok || !v.writable(s[2], s[3], s[4]) {
		return StatusInvalidMemoryAccess
	}
	st := v.group.shared
	st.mu.Lock()
	val, found := st.data[string(key)]
	st.mu.Unlock()
	if !found {
		return StatusNotFound
	}
	if status := v.copyOut(ctx, val.value, s[2], s[3]); status != StatusOK {
		return status
	}
	v.putU32(s[4], val.cas)
	return StatusOK
}

// hSetSharedData sets a value; a non-zero cas must match the value's
// current one (Envoy's semantics: a missing key accepts any cas).
func (v *vm) hSetSharedData(_ context.Context, s []uint64) Status {
	key, ok1 := v.bytes(s[0], s[1])
	val, ok2 := v.bytes(s[2], s[3])
	if !ok1 || !ok2 {
		return StatusInvalidMemoryAccess
	}
	cas := uint32(s[4])
	st := v.group.shared
	st.mu.Lock()
	defer st.mu.Unlock()
	cur, found := st.data[string(key)]
	if found && cas != 0 && cas != cur.cas {
		return StatusCasMismatch
	}
	size := st.bytes + len(val)
	if found {
		size -= len(cur.value)
	} else {
		size += len(key)
	}
	if max := v.group.host.opts.Limits.MaxSharedDataBytes; size > max {
		v.logger().Warn("proxy_set_shared_data refused: over the vm_id's shared data limit",
			"vm_id", v.group.key.vmID, "bytes", size, "max_shared_data_bytes", max)
		return StatusInternalFailure
	}
	st.bytes = size
	st.cas++
	if st.cas == 0 {
		st.cas++
	}
	st.data[string(key)] = sharedValue{value: append([]byte(nil), val...), cas: st.cas}
	return StatusOK
}

// SharedData returns a copy of a shared data value of a vm_id, for tests
// and embedders.
func (h *Host) SharedData(vmID, key string) ([]byte, uint32, bool) {
	st := h.sharedFor(vmID)
	st.mu.Lock()
	defer st.mu.Unlock()
	val, ok := st.data[key]
	return append([]byte(nil), val.value...), val.cas, ok
}

// queueRegistry holds the shared queues of every vm_id.
type queueRegistry struct {
	mu     sync.Mutex
	byName map[queueKey]*queue
	byID   map[uint32]*queue
	nextID uint32
}

type queueKey struct{ vmID, name string }

type queue struct {
	id    uint32
	key   queueKey
	items [][]byte
	// owners are the root contexts that registered the queue; the first
	// live one is told of each item that arrives (proxy_on_queue_ready).
	owners []queueOwner
}

type queueOwner struct {
	v    *vm
	root uint32
}

func newQueueRegistry() *queueRegistry {
	return &queueRegistry{byName: map[queueKey]*queue{}, byID: map[uint32]*queue{}}
}

// maxQueueItems bounds a queue nobody drains.
const maxQueueItems = 10000

func (v *vm) hRegisterSharedQueue(_ context.Context, s []uint64) Status {
	name, ok := v.str(s[0], s[1])
	if !ok || !v.writable(s[2]) {
		return StatusInvalidMemoryAccess
	}
	// cpp-host ContextBase::registerSharedQueue: the queue is the root
	// context's (of the effective context), where proxy_on_queue_ready runs.
	root := v.rootOfEff()
	if root == nil {
		return StatusNotFound
	}
	r := v.group.host.queues
	r.mu.Lock()
	k := queueKey{v.group.key.vmID, name}
	q := r.byName[k]
	if q == nil {
		r.nextID++
		q = &queue{id: r.nextID, key: k}
		r.byName[k] = q
		r.byID[q.id] = q
	}
	// The latest registration is told first; registering again moves the
	// root context to the front instead of adding it twice.
	q.owners = slices.DeleteFunc(q.owners, func(o queueOwner) bool { return o.v == v && o.root == root.id })
	q.owners = slices.Insert(q.owners, 0, queueOwner{v, root.id})
	if !slices.Contains(v.queues, q) {
		v.queues = append(v.queues, q)
	}
	r.mu.Unlock()
	v.putU32(s[2], q.id)
	return StatusOK
}

func (v *vm) hResolveSharedQueue(_ context.Context, s []uint64) Status {
	vmID, ok1 := v.str(s[0], s[1])
	name, ok2 := v.str(s[2], s[3])
	if !ok1 || !ok2 || !v.writable(s[4]) {
		return StatusInvalidMemoryAccess
	}
	if vmID == "" {
		vmID = v.group.key.vmID
	}
	r := v.group.host.queues
	r.mu.Lock()
	q := r.byName[queueKey{vmID, name}]
	r.mu.Unlock()
	if q == nil {
		return StatusNotFound
	}
	v.putU32(s[4], q.id)
	return StatusOK
}

func (v *vm) hEnqueueSharedQueue(_ context.Context, s []uint64) Status {
	data, ok := v.bytes(s[1], s[2])
	if !ok {
		return StatusInvalidMemoryAccess
	}
	r := v.group.host.queues
	r.mu.Lock()
	q := r.byID[uint32(s[0])]
	if q == nil {
		r.mu.Unlock()
		return StatusNotFound
	}
	if len(q.items) >= maxQueueItems {
		r.mu.Unlock()
		return StatusInternalFailure
	}
	q.items = append(q.items, append([]byte(nil), data...))
	r.mu.Unlock()
	// One proxy_on_queue_ready per item, as cpp-host's SharedQueue::enqueue
	// posts one onQueueReady per item (a plugin may dequeue one item each
	// time). Delivered from another goroutine: the owner may be this very
	// VM, whose callback is running.
	go r.deliver(q)
	return StatusOK
}

func (v *vm) hDequeueSharedQueue(ctx context.Context, s []uint64) Status {
	if !v.writable(s[1], s[2]) {
		return StatusInvalidMemoryAccess
	}
	r := v.group.host.queues
	r.mu.Lock()
	q := r.byID[uint32(s[0])]
	if q == nil {
		r.mu.Unlock()
		return StatusNotFound
	}
	if len(q.items) == 0 {
		r.mu.Unlock()
		return StatusEmpty
	}
	item := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	r.mu.Unlock()
	return v.copyOut(ctx, item, s[1], s[2])
}

// forget removes v's root context root (every root context of v if root is
// 0) from the owners of the queues it registered: a closed VM or root
// context is told nothing more, and the registry, which lives as long as
// the host, must not keep the VM reachable. The queues and their items stay
// for the next VM of the vm_id that registers them (after a reload, say).
func (r *queueRegistry) forget(v *vm, root uint32) {
	if len(v.queues) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range v.queues {
		q.owners = slices.DeleteFunc(q.owners, func(o queueOwner) bool { return o.v == v && (root == 0 || o.root == root) })
	}
	if root == 0 {
		v.queues = nil
	}
}

// deliver calls proxy_on_queue_ready on the first live owner of q.
func (r *queueRegistry) deliver(q *queue) {
	r.mu.Lock()
	owners := append([]queueOwner(nil), q.owners...)
	r.mu.Unlock()
	for _, o := range owners {
		v := o.v
		v.mu.Lock()
		if v.closed || v.failed.Load() {
			v.mu.Unlock()
			continue
		}
		root := v.ctxs[o.root]
		if root != nil {
			_, _ = v.call(context.Background(), root, v.cb.queueReady, "proxy_on_queue_ready", uint64(o.root), uint64(q.id))
		}
		v.mu.Unlock()
		if root != nil {
			return
		}
	}
}
