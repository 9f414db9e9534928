# Installs streamclassd as a systemd service.
#
#   cargo build --release                  # or: make build
#   sudo make install PREFIX=/usr          # files, then user, directories, daemon-reload
#   make install DESTDIR=/tmp/stage PREFIX=/usr    # files only (packaging)
#   scripts/package-deb                    # a .deb from such a staging tree
#
# Installed (PREFIX defaults to /usr/local; /etc and /var are never under PREFIX):
#   $(PREFIX)/bin/streamclassd                          the release binary
#   $(PREFIX)/lib/streamclassd/libonnxruntime.so        ONNX Runtime, from the project's .venv
#   $(PREFIX)/lib/systemd/system/streamclassd.service   and streamclassd@.service
#   $(PREFIX)/lib/sysusers.d/streamclassd.conf          user and group streamclassd (+ video)
#   $(PREFIX)/lib/tmpfiles.d/streamclassd.conf          /var/lib/streamclassd{,/models}
#   /etc/streamclassd/streamclassd.toml                 default configuration (kept if present)
#   $(PREFIX)/share/doc/streamclassd/                   README.md, example.toml, licenses
# The units name /usr/bin and /usr/lib/streamclassd; for another PREFIX they are rewritten.

PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     := $(PREFIX)/bin
PKGLIBDIR  := $(PREFIX)/lib/streamclassd
UNITDIR    := $(PREFIX)/lib/systemd/system
SYSUSERSDIR := $(PREFIX)/lib/sysusers.d
TMPFILESDIR := $(PREFIX)/lib/tmpfiles.d
DOCDIR     := $(PREFIX)/share/doc/streamclassd
CONFDIR    := /etc/streamclassd

# What gets installed; both may be overridden (the tests pass the binary cargo built).
BINARY      ?= target/release/streamclassd
# scripts/env finds the onnxruntime wheel's library in .venv (or keeps $ORT_DYLIB_PATH).
ORT_LIBRARY ?= $(shell bash -c '. scripts/env >/dev/null 2>&1; printf %s "$$ORT_DYLIB_PATH"')
# The wheel's license files sit next to capi/.
ORT_DIR     := $(abspath $(dir $(ORT_LIBRARY))..)

INSTALL := install

.PHONY: all build install install-files post-install uninstall deb

all: build

build:
	cargo build --release

install: install-files
ifeq ($(DESTDIR),)
	$(MAKE) --no-print-directory post-install
endif

# An existing configuration is the administrator's: it is never overwritten.
install-files:
	@test -x "$(BINARY)" || { echo "make: $(BINARY) missing: run cargo build --release first" >&2; exit 1; }
	@test -n "$(ORT_LIBRARY)" && test -f "$(ORT_LIBRARY)" || { echo "make: ONNX Runtime library not found (ORT_LIBRARY='$(ORT_LIBRARY)'): run scripts/setup or pass ORT_LIBRARY=/path/libonnxruntime.so" >&2; exit 1; }
	$(INSTALL) -d -m 0755 "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(PKGLIBDIR)" "$(DESTDIR)$(UNITDIR)" \
		"$(DESTDIR)$(SYSUSERSDIR)" "$(DESTDIR)$(TMPFILESDIR)" "$(DESTDIR)$(DOCDIR)" "$(DESTDIR)$(CONFDIR)"
	$(INSTALL) -m 0755 "$(BINARY)" "$(DESTDIR)$(BINDIR)/streamclassd"
	$(INSTALL) -m 0644 "$(ORT_LIBRARY)" "$(DESTDIR)$(PKGLIBDIR)/libonnxruntime.so"
	for u in streamclassd.service streamclassd@.service; do \
		sed -e 's|/usr/bin/streamclassd|$(BINDIR)/streamclassd|g' \
		    -e 's|/usr/lib/streamclassd/|$(PKGLIBDIR)/|g' \
		    -e 's|/usr/share/doc/streamclassd/|$(DOCDIR)/|g' "systemd/$$u" > "$(DESTDIR)$(UNITDIR)/$$u.tmp" && \
		chmod 0644 "$(DESTDIR)$(UNITDIR)/$$u.tmp" && mv "$(DESTDIR)$(UNITDIR)/$$u.tmp" "$(DESTDIR)$(UNITDIR)/$$u" || exit 1; \
	done
	$(INSTALL) -m 0644 systemd/streamclassd.sysusers "$(DESTDIR)$(SYSUSERSDIR)/streamclassd.conf"
	$(INSTALL) -m 0644 systemd/streamclassd.tmpfiles "$(DESTDIR)$(TMPFILESDIR)/streamclassd.conf"
	test -e "$(DESTDIR)$(CONFDIR)/streamclassd.toml" || \
		$(INSTALL) -m 0644 config/streamclassd.toml "$(DESTDIR)$(CONFDIR)/streamclassd.toml"
	$(INSTALL) -m 0644 README.md "$(DESTDIR)$(DOCDIR)/README.md"
	$(INSTALL) -m 0644 config/example.toml "$(DESTDIR)$(DOCDIR)/example.toml"
	for f in LICENSE ThirdPartyNotices.txt; do \
		if [ -f "$(ORT_DIR)/$$f" ]; then $(INSTALL) -m 0644 "$(ORT_DIR)/$$f" "$(DESTDIR)$(DOCDIR)/onnxruntime-$$f" || exit 1; \
		else echo "make: warning: $(ORT_DIR)/$$f not found; ONNX Runtime's license is not installed" >&2; fi; \
	done

# On the target system (DESTDIR empty, as root): what the .deb's postinst does.
# Configurations may hold RTSP passwords: only root and the daemon can read them.
post-install:
	systemd-sysusers "$(SYSUSERSDIR)/streamclassd.conf"
	systemd-tmpfiles --create "$(TMPFILESDIR)/streamclassd.conf"
	chown root:streamclassd "$(CONFDIR)"
	chmod 0750 "$(CONFDIR)"
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "streamclassd installed: edit $(CONFDIR)/streamclassd.toml, then systemctl enable --now streamclassd"

# Leaves the configuration, /var/lib/streamclassd and the user in place.
uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/streamclassd" "$(DESTDIR)$(PKGLIBDIR)/libonnxruntime.so" \
		"$(DESTDIR)$(UNITDIR)/streamclassd.service" "$(DESTDIR)$(UNITDIR)/streamclassd@.service" \
		"$(DESTDIR)$(SYSUSERSDIR)/streamclassd.conf" "$(DESTDIR)$(TMPFILESDIR)/streamclassd.conf"
	rm -rf "$(DESTDIR)$(DOCDIR)"
	-rmdir "$(DESTDIR)$(PKGLIBDIR)"

deb:
	scripts/package-deb
