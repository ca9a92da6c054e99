# The two commands a newcomer needs: `make run` and `make test`. Each installs what is missing
# and builds first.
#   make build   Release with debug info -> build/outpost
#   make run     build, then serve on 127.0.0.1:8080 with data in ./var
#   make test    ASan+UBSan build, unit tests (ctest), black-box tests (pytest), OpenAPI lint
#   make bench   Release build, benchmarks side by side with the anchors -> BENCHMARKS.md
.PHONY: deps build build-test run test unit functional bench clean format

JOBS ?= $(shell nproc)
PYTHON := /usr/bin/python3
CMAKE_COMMON := -G Ninja -DCMAKE_EXPORT_COMPILE_COMMANDS=ON

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B build $(CMAKE_COMMON) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTPOST_TESTS=OFF >/dev/null
	@cmake --build build -j $(JOBS)

run: build
	./build/outpost serve $(ARGS)

build-test: deps
	@cmake -S . -B build-test $(CMAKE_COMMON) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTPOST_SANITIZE=ON -DOUTPOST_TESTS=ON >/dev/null
	@cmake --build build-test -j $(JOBS)

unit: build-test
	cd build-test && ctest --output-on-failure -j $(JOBS)

functional: build-test
	OUTPOST_BIN=$(CURDIR)/build-test/outpost $(PYTHON) -m pytest -q tests/functional

test: unit functional

bench: deps
	@cmake -S . -B build-bench $(CMAKE_COMMON) -DCMAKE_BUILD_TYPE=Release -DOUTPOST_TESTS=OFF -DOUTPOST_BENCH=ON >/dev/null
	@cmake --build build-bench -j $(JOBS)
	bench/run-bench
	bench/camera/run-camera-bench
	bench/hub/run-hub-bench
	bench/edge/run-edge-bench
	bench/rules/run-rules-bench

format:
	clang-format -i $$(git ls-files 'src/*.cpp' 'src/*.hpp' 'web/*.cpp' 'web/*.hpp' 'bench/*.cpp')

clean:
	rm -rf build build-test build-bench
