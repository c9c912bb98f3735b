-- scout as a rock: the agent (bin/scout), libscout.so (the shared-memory snapshot reader scout.shm loads through
-- the FFI) and the Lua modules (scout.*, resty.scout).
--
-- The supported path is `luarocks make` from a checkout, for LuaJIT:
--
--   luarocks --lua-version 5.1 make scout-0.1.0-1.rockspec            # or --tree DIR
--
-- (point luarocks at LuaJIT first: a config with lua_interpreter = "luajit" and LUA_INCDIR =
-- /usr/include/luajit-2.1; tests/rockspec/run.sh writes one.) `luarocks make` builds the working tree it is run in and
-- never fetches `source`; the URL below only matters to `luarocks build`/`pack` and must be pointed at wherever the
-- repository lives.
--
-- The Makefile does the work: CFLAGS and LDFLAGS are appended to its own, never replace them.  Where things land in
-- the tree: Lua modules in share/lua/5.1, libscout.so in lib/lua/5.1 (a package.cpath directory, which is where
-- scout.shm looks for it), the agent in bin/.
rockspec_format = "3.0"
package = "scout"
version = "0.1.0-1"

source = {
  url = "git+file:///srv/git/scout.git",  -- placeholder: not read by `luarocks make`
}

description = {
  summary = "ZooKeeper service discovery agent programmed in Lua, with an OpenResty balancer",
  license = "MIT",
  homepage = "https://github.com/scout-discovery/scout",  -- placeholder, like source.url: where the repository lives
  labels = { "zookeeper", "service-discovery", "openresty", "dubbo" },
  detailed = [[
A small C agent keeps a ZooKeeper session, watches and a cache, and hands every change to a Lua policy. Programs on
the host read what it knows over a local HTTP API, or, from LuaJIT and OpenResty workers, straight from a
shared-memory snapshot (scout.shm, resty.scout).
]],
}

supported_platforms = { "linux" }

-- scout.shm and resty.scout use LuaJIT's FFI; the agent embeds LuaJIT itself whatever Lua luarocks targets.
-- lua-cjson: the policy runtime encodes and decodes JSON with it (Debian: lua-cjson, which a luarocks config can
-- declare in rocks_provided, as tests/rockspec/run.sh does).
dependencies = {
  "lua ~> 5.1",
  "lua-cjson >= 2.1",
}

external_dependencies = {
  ZOOKEEPER = {
    header = "zookeeper/zookeeper.h",
    library = "zookeeper_st",
  },
  LIBEV = {
    header = "ev.h",
    library = "ev",
  },
  JANSSON = {
    header = "jansson.h",
    library = "jansson",
  },
  HTTP_PARSER = {
    header = "http_parser.h",
    library = "http_parser",
  },
  CURL = {                -- the client commands (scout status, show, ...); Debian keeps curl/curl.h in the
    library = "curl",     -- multiarch include directory, which luarocks does not search: the library is the test
  },
}

build = {
  type = "make",
  build_target = "all",
  install_target = "install",

  -- Passed to both passes, so `install: all` finds everything up to date.
  variables = {
    CFLAGS = '$(CFLAGS) -I"$(ZOOKEEPER_INCDIR)" -I"$(LIBEV_INCDIR)" -I"$(JANSSON_INCDIR)" -I"$(HTTP_PARSER_INCDIR)"'
             .. ' -I"$(CURL_INCDIR)"',
    LDFLAGS = '-L"$(ZOOKEEPER_LIBDIR)" -L"$(LIBEV_LIBDIR)" -L"$(JANSSON_LIBDIR)" -L"$(HTTP_PARSER_LIBDIR)"'
              .. ' -L"$(CURL_LIBDIR)"',
    LIBFLAG = "$(LIBFLAG)",
    LUA_LIBDIR = "$(LUA_LIBDIR)",
    -- Compiled into the agent: where the tree's Lua modules end up after luarocks deploys them (bin/../share/lua/5.1;
    -- $(LUADIR) is only a staging directory luarocks empties).
    LUA_DIR = "$(SCRIPTS_DIR)/../share/lua/5.1",
    -- One object directory per rocks tree: objects from a plain `make` (or from a build for another tree) carry
    -- another LUA_DIR and must not be reused.
    BUILD = "build/luarocks$(ROCKS_TREE)",
  },

  install_variables = {
    PREFIX = "$(PREFIX)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    BINDIR = "$(BINDIR)",
  },
}
