package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// ReconcileKinds are the kinds ReconcileDone is called with; their series
// exist from the start so a rate() over them is defined before the first
// error.
var ReconcileKinds = []string{"set", "update", "sync", "policy", "import"}

// policyApplyBuckets span an nftables apply, from a small table (about a
// millisecond) to a large one with big sets (seconds).
var policyApplyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Registry holds evpnd's metrics: the instruments the daemon updates as
// things happen and a collector that reads the daemon's state at scrape
// time. It has its own prometheus.Registry, so nothing leaks in from (or
// out to) the process-wide default one.
type Registry struct {
	reg           *prometheus.Registry
	log           *slog.Logger
	scrapeTimeout time.Duration

	reconcileRuns   *prometheus.CounterVec
	reconcileErrors *prometheus.CounterVec
	policyApply     *prometheus.HistogramVec
	policyErrors    *prometheus.CounterVec
	apiRequests     *prometheus.CounterVec
	dupDetected     prometheus.Counter
	dupFrozen       prometheus.Gauge
}

// Option changes a Registry that New builds.
type Option func(*options)

type options struct {
	log           *slog.Logger
	scrapeTimeout time.Duration
}

// WithLogger sets where scrape and serve failures are logged; the default
// is slog.Default().
func WithLogger(log *slog.Logger) Option {
	return func(o *options) { o.log = log }
}

// WithScrapeTimeout bounds the Source calls of one scrape; the default is
// DefaultScrapeTimeout.
func WithScrapeTimeout(d time.Duration) Option {
	return func(o *options) { o.scrapeTimeout = d }
}

// New builds the registry for src; version is evpnd's build version, shown
// in evpnd_build_info.
func New(src Source, version string, opts ...Option) *Registry {
	o := options{log: slog.Default(), scrapeTimeout: DefaultScrapeTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	r := &Registry{
		reg:           prometheus.NewRegistry(),
		log:           o.log,
		scrapeTimeout: o.scrapeTimeout,
		reconcileRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "evpnd_reconcile_runs_total",
			Help: "Reconcile runs by kind: set (whole desired state), update (incremental), sync (periodic resync), policy.",
		}, []string{"kind"}),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "evpnd_reconcile_errors_total",
			Help: "Reconcile runs that ended in an error, by kind.",
		}, []string{"kind"}),
		policyApply: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "evpnd_policy_apply_duration_seconds",
			Help:    "Duration of successful policy applies (one atomic nftables transaction per tenant).",
			Buckets: policyApplyBuckets,
		}, []string{"tenant"}),
		policyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "evpnd_policy_apply_errors_total",
			Help: "Policy applies that failed, by tenant; the tenant keeps its previous rules.",
		}, []string{"tenant"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "evpnd_api_requests_total",
			Help: "gRPC API calls by full method name and status code.",
		}, []string{"method", "code"}),
		dupDetected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "evpnd_mac_duplicates_detected_total",
			Help: "MACs detected as duplicates (too many moves, RFC 7432 s15.1) and frozen.",
		}),
		dupFrozen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "evpnd_mac_duplicates_frozen",
			Help: "MACs frozen as duplicates now, until cleared (evpnctl clear duplicate-mac).",
		}),
	}
	for _, k := range ReconcileKinds {
		r.reconcileRuns.WithLabelValues(k)
		r.reconcileErrors.WithLabelValues(k)
	}
	r.reg.MustRegister(
		newCollector(src, version, o.scrapeTimeout, o.log),
		r.reconcileRuns, r.reconcileErrors,
		r.policyApply, r.policyErrors,
		r.apiRequests, r.dupDetected, r.dupFrozen,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return r
}

// Gatherer is the underlying registry, for tests and for serving it some
// other way than Handler.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// ReconcileDone counts one reconcile run of kind and, when err is not nil,
// its failure.
func (r *Registry) ReconcileDone(kind string, err error) {
	r.reconcileRuns.WithLabelValues(kind).Inc()
	if err != nil {
		r.reconcileErrors.WithLabelValues(kind).Inc()
	}
}

// PolicyApplied records one policy apply for tenant that took d. Failed
// applies are counted, not timed: a validation error returns in
// microseconds and would drag the histogram down.
func (r *Registry) PolicyApplied(tenant string, d time.Duration, err error) {
	if err != nil {
		r.policyErrors.WithLabelValues(tenant).Inc()
		return
	}
	r.policyErrors.WithLabelValues(tenant) // a 0 series before the first failure
	r.policyApply.WithLabelValues(tenant).Observe(d.Seconds())
}

// ForgetTenant drops the series the daemon fed for tenant, once the tenant
// is deleted; scrape-time series go away by themselves.
func (r *Registry) ForgetTenant(tenant string) {
	r.policyApply.DeleteLabelValues(tenant)
	r.policyErrors.DeleteLabelValues(tenant)
}

// DuplicatesDetected counts n MACs newly frozen as duplicates; frozen is
// how many are frozen now.
func (r *Registry) DuplicatesDetected(n, frozen int) {
	r.dupDetected.Add(float64(n))
	r.dupFrozen.Set(float64(frozen))
}

// APIRequest counts one gRPC call; code is the status code's name (OK,
// InvalidArgument, ...).
func (r *Registry) APIRequest(method string, code string) {
	r.apiRequests.WithLabelValues(method, code).Inc()
}

// UnaryServerInterceptor counts every unary call in
// evpnd_api_requests_total; chain it into the API server.
func (r *Registry) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		r.APIRequest(info.FullMethod, grpcCode(err))
		return resp, err
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls.
func (r *Registry) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		r.APIRequest(info.FullMethod, grpcCode(err))
		return err
	}
}

// grpcCode is the status code the client sees for a handler's error: the
// server maps a bare context error to Canceled or DeadlineExceeded, not
// Unknown.
func grpcCode(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Code().String()
	}
	return status.FromContextError(err).Code().String()
}

// Handler serves this registry in the Prometheus exposition formats. A
// collection error is logged and the rest of the metrics are still served.
func (r *Registry) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(r.reg, promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(r.log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      r.reg,
		// Each scrape calls into the daemon; queuing scrapes behind a slow
		// one only multiplies the load.
		MaxRequestsInFlight: 4,
	}))
}

const indexPage = `<html>
<head><title>evpnd</title></head>
<body>
<h1>evpnd</h1>
<p><a href="/metrics">Metrics</a></p>
</body>
</html>
`

func (r *Registry) mux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.Handler())
	// Profiles for performance work and leak hunts, on the same (by
	// default loopback) address as the metrics.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(indexPage))
	})
	return mux
}

// shutdownTimeout bounds how long a stopping server waits for scrapes in
// flight.
const shutdownTimeout = 5 * time.Second

// Serve listens on addr (host:port; port 0 picks a free one) and serves
// /metrics, with a page on / linking to it, until ctx ends. It returns
// once listening, with the bound address, so the daemon can log it.
func (r *Registry) Serve(ctx context.Context, addr string) (net.Addr, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	go func() {
		if err := r.ServeListener(ctx, ln); err != nil {
			r.log.Error("metrics server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return ln.Addr(), nil
}

// ServeListener serves /metrics on ln until ctx ends, then shuts the server
// down and returns; it closes ln. It returns an error only when serving
// failed before ctx ended.
func (r *Registry) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           r.mux(),
		ReadHeaderTimeout: 10 * time.Second,
		// A scrape may take up to the scrape timeout to collect.
		WriteTimeout: r.scrapeTimeout + 30*time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("metrics: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("metrics: shut down server on %s: %w", ln.Addr(), err)
	}
	return nil
}
