# The two commands of the README: `make demo` and `make test`. Each installs missing Debian
# packages first, then configures and builds with CMake.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
ifeq ($(CI),true)
CMAKE_ARGS += -DCWT_WERROR=ON
endif

.PHONY: all deps build build-asan test test-fast demo fuzz package bench clean format check-format

all: build

deps:
	@sh packaging/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCWT_SANITIZE=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# Every test, then the unit and engine tests again under ASan + UBSan (the engine's host code
# under the sanitizers, its shaders on lavapipe: about 20 s).
test: build build-asan
	@sh scripts/check-format.sh
	cd $(BUILD) && ctest --output-on-failure -j 2
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -L 'unit|engine'

demo: build
	@sh scripts/demo.sh $(BUILD)

fuzz: deps
	@sh tests/fuzz/run.sh long

package: build
	cd $(BUILD) && cpack -G DEB

format:
	@clang-format -i $$(git ls-files '*.c' '*.h' '*.cpp')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
