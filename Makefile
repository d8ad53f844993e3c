# ocf-csync build, test and demo. Every target installs what it needs, so a
# fresh Debian machine needs nothing but this checkout.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/ocf-csync
DESTDIR ?=
SBINDIR ?= /usr/sbin
OCFDIR ?= /usr/lib/ocf/resource.d/csync
HADIR ?= /etc/ha.d/resource.d

# Debian packages the tests and the demo drive for real.
DEB_PKGS := openssh-server openssh-client rsync rdiff csync2 pacemaker corosync crmsh \
	resource-agents libxml2-utils iproute2 procps psmisc util-linux hyperfine time strace

.PHONY: all deps build test test-short install uninstall demo bench fuzz vet clean

all: build

deps:
	@missing=""; for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(GO) mod download

build:
	@mkdir -p bin
	$(GO) build -o $(BIN) ./cmd/ocf-csync

vet:
	$(GO) vet ./...

# The whole suite, including the multi-node tests in network namespaces
# (they need root; under CI=true they fail instead of skipping without it).
test: deps build vet
	OCF_CSYNC_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 25m ./...

test-short: build
	$(GO) test -short -count=1 ./...

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=60s ./syncer/config/

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/ocf-csync
	install -d $(DESTDIR)$(OCFDIR) $(DESTDIR)$(HADIR)
	ln -sf $(SBINDIR)/ocf-csync $(DESTDIR)$(OCFDIR)/mirror
	ln -sf $(SBINDIR)/ocf-csync $(DESTDIR)$(HADIR)/mirror
	install -D -m 0644 packaging/cron/ocf-csync $(DESTDIR)/usr/share/doc/ocf-csync/examples/cron.d-ocf-csync
	install -D -m 0644 packaging/systemd/ocf-csync-sync.service $(DESTDIR)/usr/share/doc/ocf-csync/examples/ocf-csync-sync.service
	install -D -m 0644 packaging/systemd/ocf-csync-sync.timer $(DESTDIR)/usr/share/doc/ocf-csync/examples/ocf-csync-sync.timer
	install -D -m 0644 packaging/examples/ocf-csync.cfg $(DESTDIR)/usr/share/doc/ocf-csync/examples/ocf-csync.cfg

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/ocf-csync $(DESTDIR)$(OCFDIR)/mirror $(DESTDIR)$(HADIR)/mirror
	rm -rf $(DESTDIR)/usr/share/doc/ocf-csync
	-rmdir $(DESTDIR)$(OCFDIR) 2>/dev/null

demo: deps build
	OCF_CSYNC_BIN=$(CURDIR)/$(BIN) $(GO) run ./tests/demo

# ocf-csync, rsync and csync2 side by side on two namespace nodes; writes
# BENCHMARKS.md (needs root, ~15 min). QUICK=1: 10k files, under 2 minutes,
# report in $$TMPDIR. Never part of `make test`.
bench: deps build
	OCF_CSYNC_BIN=$(CURDIR)/$(BIN) QUICK=$(QUICK) $(GO) run ./tests/bench

clean:
	rm -rf bin
