# ocf-csync build, test and demo. Every target installs what it needs, so a
# fresh Debian machine needs nothing but this checkout.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/ocf-csync
# The version in the binary and the .deb: 0.1.0~git<commit date>.<commit>.
VERSION ?= 0.1.0~git$(shell git log -1 --format=%cd.%h --date=format:%Y%m%d 2>/dev/null || echo 0)
ARCH ?= $(shell $(GO) env GOARCH)
DEB := bin/ocf-csync_$(VERSION)_$(ARCH).deb
LDFLAGS := -X main.version=$(VERSION)
DESTDIR ?=
SBINDIR ?= /usr/sbin
OCFDIR ?= /usr/lib/ocf/resource.d/csync
HADIR ?= /etc/ha.d/resource.d

# Debian packages the tests and the demo drive for real.
DEB_PKGS := openssh-server openssh-client rsync rdiff csync2 pacemaker corosync crmsh \
	resource-agents libxml2-utils iproute2 procps psmisc util-linux hyperfine time strace man-db

.PHONY: all deps build deb test test-short install uninstall demo bench fuzz vet clean

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
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/ocf-csync

# The .deb (nfpm as a library, packaging/nfpm.yaml): the binary, the OCF and
# ha.d links, ocf-csync(8) generated from the command line, bash completion,
# examples, cron.d and systemd units (disabled), logrotate.
deb: build
	@mkdir -p bin/deb
	cp $(BIN) bin/deb/ocf-csync
	./$(BIN) man | gzip -9n > bin/deb/ocf-csync.8.gz
	rm -f bin/ocf-csync_*.deb
	VERSION='$(VERSION)' ARCH=$(ARCH) BUILD=bin/deb $(GO) run ./packaging/mkdeb -o $(DEB)
	@echo "built $(DEB)"

vet:
	$(GO) vet ./...

# The whole suite, including the multi-node tests in network namespaces
# (they need root; under CI=true they fail instead of skipping without it).
test: deps build deb vet
	OCF_CSYNC_BIN=$(CURDIR)/$(BIN) OCF_CSYNC_DEB=$(CURDIR)/$(DEB) $(GO) test -count=1 -timeout 25m ./...

test-short: build
	$(GO) test -short -count=1 ./...

# Every fuzz target for FUZZTIME each; the seed corpora are in the
# packages' testdata/fuzz/, so this runs from a fresh clone.
FUZZTIME ?= 30s
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for t in $$(grep -h --include='*_test.go' -r -o '^func Fuzz[A-Za-z0-9_]*' $$dir | sed 's/^func //' | sort -u); do \
			echo "== $$dir $$t ($(FUZZTIME))"; \
			$(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $$dir; \
		done; \
	done

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/ocf-csync
	install -d $(DESTDIR)/usr/share/man/man8
	./$(BIN) man | gzip -9n > $(DESTDIR)/usr/share/man/man8/ocf-csync.8.gz
	install -d $(DESTDIR)$(OCFDIR) $(DESTDIR)$(HADIR)
	ln -sf $(SBINDIR)/ocf-csync $(DESTDIR)$(OCFDIR)/mirror
	ln -sf $(SBINDIR)/ocf-csync $(DESTDIR)$(HADIR)/mirror
	install -D -m 0644 packaging/cron/ocf-csync $(DESTDIR)/usr/share/doc/ocf-csync/examples/cron.d-ocf-csync
	install -D -m 0644 packaging/systemd/ocf-csync-sync.service $(DESTDIR)/usr/share/doc/ocf-csync/examples/ocf-csync-sync.service
	install -D -m 0644 packaging/systemd/ocf-csync-sync.timer $(DESTDIR)/usr/share/doc/ocf-csync/examples/ocf-csync-sync.timer
	install -D -m 0644 packaging/examples/ocf-csync.cfg $(DESTDIR)/usr/share/doc/ocf-csync/examples/ocf-csync.cfg

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/ocf-csync $(DESTDIR)$(OCFDIR)/mirror $(DESTDIR)$(HADIR)/mirror $(DESTDIR)/usr/share/man/man8/ocf-csync.8.gz
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
