package proxy

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/nethttp"
)

// router is an HTTP listener's upstream side: one cluster, or Envoy's
// route_config (virtual hosts by domain, routes by path).
type router struct {
	fixed  *target // the listener's cluster, without route_config
	vhosts []vhost // route_config
	exact  map[string]*vhost
	any    *vhost     // the "*" domain
	suffix []wildcard // "*.example.com", longest first
	prefix []wildcard // "example.*", longest first
}

// target is where a route goes: a cluster, or a direct response (no
// cluster).
type target struct {
	handler http.Handler
	cluster *abi.ClusterInfo
}

// directHandler answers as Envoy's DirectResponseAction: the status, the
// body as text/plain, response code details "direct_response".
func directHandler(d *DirectResponse) http.HandlerFunc {
	var body string
	if d.Body != nil {
		body = d.Body.InlineString
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if info := nethttp.StreamInfoFrom(r); info != nil {
			info.SetResponseCodeDetails("direct_response")
		}
		if body != "" {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.WriteHeader(d.Status)
		_, _ = io.WriteString(w, body)
	}
}

type vhost struct {
	info   abi.RouteInfo // the virtual host's name and metadata
	routes []route
}

type route struct {
	match *routeMatcher
	info  *abi.RouteInfo
	to    *target
}

type wildcard struct {
	part string // the domain without its "*"
	vh   *vhost
}

// router builds the router of an HTTP listener.
func (p *Proxy) router(l *Listener) *router {
	targets := map[string]*target{}
	to := func(name string) *target {
		if t := targets[name]; t != nil {
			return t
		}
		t := &target{handler: echoHandler{}, cluster: &abi.ClusterInfo{Name: name}}
		if cl := p.cluster(name); cl != nil {
			t.handler = clusterHandler{u: p.ups[name]}
			t.cluster.Metadata = cl.Metadata.abi()
		}
		targets[name] = t
		return t
	}
	rc := l.HTTP.RouteConfig
	if rc == nil {
		return &router{fixed: to(l.HTTP.Cluster)}
	}
	rt := &router{exact: map[string]*vhost{}, vhosts: make([]vhost, len(rc.VirtualHosts))}
	for i := range rc.VirtualHosts {
		c := &rc.VirtualHosts[i]
		vh := &rt.vhosts[i]
		vh.info = abi.RouteInfo{VirtualHostName: c.Name, VirtualHostMetadata: c.Metadata.abi()}
		for j := range c.Routes {
			r := &c.Routes[j]
			info := vh.info
			info.Name, info.Metadata = r.Name, r.Metadata.abi()
			var t *target
			if r.DirectResponse != nil {
				t = &target{handler: directHandler(r.DirectResponse)}
			} else {
				t = to(r.Route.Cluster)
			}
			// Validate reported what is wrong with the match.
			m := compileRouteMatch(func(string, string, ...any) {}, "", &r.Match)
			vh.routes = append(vh.routes, route{match: m, info: &info, to: t})
		}
		for _, d := range c.Domains {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				rt.any = vh
			case strings.HasPrefix(d, "*"):
				rt.suffix = append(rt.suffix, wildcard{d[1:], vh})
			case strings.HasSuffix(d, "*"):
				rt.prefix = append(rt.prefix, wildcard{d[:len(d)-1], vh})
			default:
				rt.exact[d] = vh
			}
		}
	}
	longestFirst := func(w []wildcard) {
		for i := 1; i < len(w); i++ {
			for j := i; j > 0 && len(w[j].part) > len(w[j-1].part); j-- {
				w[j], w[j-1] = w[j-1], w[j]
			}
		}
	}
	longestFirst(rt.suffix)
	longestFirst(rt.prefix)
	return rt
}

// vhost is Envoy's virtual host selection: an exact domain, then the
// longest suffix wildcard, then the longest prefix wildcard, then "*"; a
// host with a port that matches nothing is tried without it.
func (rt *router) vhost(host string) *vhost {
	host = strings.ToLower(host)
	for {
		if vh := rt.exact[host]; vh != nil {
			return vh
		}
		for _, w := range rt.suffix {
			if strings.HasSuffix(host, w.part) && len(host) > len(w.part) {
				return w.vh
			}
		}
		for _, w := range rt.prefix {
			if strings.HasPrefix(host, w.part) && len(host) > len(w.part) {
				return w.vh
			}
		}
		h, _, err := net.SplitHostPort(host)
		if err != nil || h == "" {
			return rt.any
		}
		host = h
	}
}

// match returns the route a request takes, the first of its virtual host
// whose match takes it; nil for none.
func (rt *router) match(r *http.Request) (*abi.RouteInfo, *target) {
	if rt.fixed != nil {
		return nil, rt.fixed
	}
	vh := rt.vhost(r.Host)
	if vh == nil {
		return nil, nil
	}
	path := r.URL.Path
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	for i := range vh.routes {
		ro := &vh.routes[i]
		if ro.match.match(r, path) {
			return ro.info, ro.to
		}
	}
	return nil, nil
}

// info gives the plugins the route and cluster of a request as it arrived
// (nethttp.Options.Info).
func (rt *router) info(r *http.Request, info *abi.StreamInfo) {
	route, to := rt.match(r)
	info.Route = route
	if to != nil {
		info.Cluster = to.cluster
	}
}

// ServeHTTP sends a request, as the plugins left it, where its route goes
// (as Envoy's router, after filters changed the headers); 404 when no route
// takes it (Envoy's route_not_found).
func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, to := rt.match(r)
	if to == nil {
		if info := nethttp.StreamInfoFrom(r); info != nil {
			info.SetResponseCodeDetails("route_not_found")
		}
		w.WriteHeader(http.StatusNotFound)
		return
	}
	to.handler.ServeHTTP(w, r)
}
