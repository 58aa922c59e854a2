package nethttp

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"net/http"

	"github.com/anywasm/anywasm/abi"
)

type infoKey struct{}

// StreamInfoFrom returns the attributes of the request the middleware
// passes to its handler (nil for any other request): the handler records
// the upstream it reached with SetUpstream, so that the plugins' response
// callbacks see upstream.address.
func StreamInfoFrom(r *http.Request) *abi.StreamInfo {
	info, _ := r.Context().Value(infoKey{}).(*abi.StreamInfo)
	return info
}

type connIDKey struct{}

// WithConnectionID returns ctx carrying the id of a downstream connection
// (the attributes connection.id and connection_id), for http.Server's
// ConnContext.
func WithConnectionID(ctx context.Context, id uint64) context.Context {
	return context.WithValue(ctx, connIDKey{}, id)
}

// ConnectionID returns the connection id WithConnectionID put in ctx.
func ConnectionID(ctx context.Context) (uint64, bool) {
	id, ok := ctx.Value(connIDKey{}).(uint64)
	return id, ok
}

// fillInfo sets what the request tells of itself, then lets Options.Info
// complete it.
func (x *exchange) fillInfo(r *http.Request) {
	info := &x.info
	info.SourceAddress = r.RemoteAddr
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		info.DestinationAddress = a.String()
	}
	if id, ok := ConnectionID(r.Context()); ok {
		info.ConnectionID = id
	}
	// Envoy's Http::Utility::getProtocolString.
	switch r.ProtoMajor {
	case 1:
		info.Protocol = r.Proto
	case 2:
		info.Protocol = "HTTP/2"
	case 3:
		info.Protocol = "HTTP/3"
	}
	if r.TLS != nil {
		info.TLS = tlsInfo(r.TLS)
	}
	if f := x.m.opts.Info; f != nil {
		f(r, info)
	}
}

// tlsInfo is Envoy's Ssl::ConnectionInfo of a Go TLS connection (of the
// peer's certificate; Go does not tell a handler which certificate it
// presented, so the local ones are unknown).
func tlsInfo(cs *tls.ConnectionState) *abi.TLSInfo {
	t := &abi.TLSInfo{ServerName: cs.ServerName}
	// BoringSSL's SSL_get_version names.
	switch cs.Version {
	case tls.VersionTLS10:
		t.Version = "TLSv1"
	case tls.VersionTLS11:
		t.Version = "TLSv1.1"
	case tls.VersionTLS12:
		t.Version = "TLSv1.2"
	case tls.VersionTLS13:
		t.Version = "TLSv1.3"
	}
	if len(cs.PeerCertificates) > 0 {
		c := cs.PeerCertificates[0]
		t.PeerCertificatePresented = true
		t.SubjectPeerCertificate = c.Subject.String()
		if len(c.URIs) > 0 {
			t.URISanPeerCertificate = c.URIs[0].String()
		}
		if len(c.DNSNames) > 0 {
			t.DNSSanPeerCertificate = c.DNSNames[0]
		}
		sum := sha256.Sum256(c.Raw)
		t.SHA256PeerCertificateDigest = hex.EncodeToString(sum[:])
	}
	return t
}
