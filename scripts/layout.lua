-- layout.lua - checks the source layout of the C code under host/ and state/.
--
--   lua5.4 scripts/layout.lua [--graph-only] [root]
--
-- root (default: the current directory) is the top of the source tree. The
-- script reads every .c and .h file under root/host and root/state, however
-- deep, and checks:
--
--   includes   every #include "..." resolves to exactly one file: first
--              relative to the root (the project's own form,
--              "host/plan/cs_plan.h"), then to the including file's folder,
--              then relative to each
--              folder of the tree (host, state and all their sub-folders), as
--              the build's include path allows a bare "cs_plan.h" anywhere.
--              A name found in no folder, or in more than one, is an error.
--   folders    the include graph between folders (a file's folder is its
--              directory) has no cycle: A -> B when a file in A includes a
--              file in B, A ~= B. Every elementary cycle is printed.
--   sizes      no file is over MAX_FILE_LINES lines and no function over
--              MAX_FUNCTION_LINES, except those in scripts/layout-allow.txt.
--
-- A function is a top-level brace block whose opening follows a signature
-- ending in a parenthesised parameter list; strings, character constants,
-- comments and preprocessor lines are removed before braces are counted, so
-- struct, enum and union bodies and initialisers are not functions. Its
-- length runs from the first line of the signature to the closing brace.
--
-- scripts/layout-allow.txt (under root; optional) lists accepted exceptions,
-- one a line; a line whose first character is '#' is a comment:
--   host/cs_job.c  why this file may be long
--   host/cs_job.c:cs_job_run  why this function may be long
-- An allowed item is printed as "allowed ..." and does not fail. An entry
-- that matches nothing over the limit fails too, so that an exception is
-- dropped when its reason is gone rather than left to hide a regression.
--
-- The last line is a summary; the long files and functions it counts include
-- the allowed ones. Exit status: 0 when the layout is clean, 1 when it is
-- not, 2 for bad arguments or an unreadable tree. With --graph-only only the
-- folder graph is printed (for the README); the status is then 1 only when
-- an include cannot be resolved.

local MAX_FILE_LINES = 900
local MAX_FUNCTION_LINES = 120
local TOPS = { "host", "state" }
local ALLOW_FILE = "scripts/layout-allow.txt"

-- ============================================================ utilities

-- Returns s quoted for /bin/sh.
local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Runs a shell command and returns the lines it printed, sorted; raises an
-- error when the command fails.
local function command_lines(cmd)
  local p = assert(io.popen(cmd, "r"))
  local lines = {}
  for line in p:lines() do lines[#lines + 1] = line end
  local ok, how, code = p:close()
  if not ok then
    error(string.format("%s: %s %s", cmd, tostring(how), tostring(code)), 0)
  end
  table.sort(lines)
  return lines
end

-- Returns the whole content of the file at path, or raises an error.
local function read_all(path)
  local f, err = io.open(path, "rb")
  if f == nil then error(err, 0) end
  local s = f:read("a")
  f:close()
  return s
end

-- Returns the number of lines of s, counted as wc -l does plus a last line
-- without its newline.
local function count_lines(s)
  local _, n = s:gsub("\n", "")
  if #s > 0 and s:sub(-1) ~= "\n" then n = n + 1 end
  return n
end

-- Returns the folder of a path ("host/plan/x.c" -> "host/plan"), or "." for
-- a bare name.
local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Returns path with "." and ".." segments folded away; leading ".." that
-- leave the root are kept.
local function normalize(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." and #parts > 0 and parts[#parts] ~= ".." then
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return table.concat(parts, "/")
end

-- Returns the keys of set t, sorted.
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- ================================================================ lexing

-- Returns src with comments replaced by a space and, unless keep_strings,
-- the contents of string and character literals removed (the quotes stay).
-- Every newline is kept, so line numbers are unchanged.
local function strip(src, keep_strings)
  local out, i, n = {}, 1, #src
  local function newlines_of(s) return (s:gsub("[^\n]", "")) end
  while i <= n do
    local j = src:find("[/\"']", i)
    if j == nil then
      out[#out + 1] = src:sub(i)
      break
    end
    out[#out + 1] = src:sub(i, j - 1)
    local c, d = src:sub(j, j), src:sub(j + 1, j + 1)
    if c == "/" and d == "/" then
      -- To the end of the line, which a backslash before it continues.
      local e = j
      repeat
        e = src:find("\n", e + 1, true) or n + 1
      until e > n or src:sub(e - 1, e - 1) ~= "\\"
      out[#out + 1] = " " .. newlines_of(src:sub(j, e - 1))
      i = e
    elseif c == "/" and d == "*" then
      local e = select(2, src:find("*/", j + 2, true)) or n
      out[#out + 1] = " " .. newlines_of(src:sub(j, e))
      i = e + 1
    elseif c == "/" then
      out[#out + 1] = c
      i = j + 1
    else
      -- A literal ends at its closing quote, or (unterminated) at a newline.
      local k, stop = j + 1, n
      while true do
        local e = src:find("[\\\n" .. c .. "]", k)
        if e == nil then break end
        local ch = src:sub(e, e)
        if ch == "\\" then
          k = e + 2
        elseif ch == "\n" then
          stop = e - 1
          break
        else
          stop = e
          break
        end
      end
      local lit = src:sub(j, stop)
      out[#out + 1] = keep_strings and lit or (c .. c .. newlines_of(lit))
      i = stop + 1
    end
  end
  return table.concat(out)
end

-- Splits s into a list of lines (without their newlines).
local function split_lines(s)
  local lines = {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  return lines
end

-- Returns the quoted includes of src as a list of {line = n, name = "x.h"}.
local function find_includes(src)
  local found = {}
  for ln, line in ipairs(split_lines(strip(src, true))) do
    local name = line:match('^%s*#%s*include%s*"([^"]*)"')
    if name ~= nil then found[#found + 1] = { line = ln, name = name } end
  end
  return found
end

-- Returns the lines of src reduced to what brace counting needs: comments,
-- literals and preprocessor directives (with their continuation lines)
-- blanked.
local function code_lines(src)
  local lines = split_lines(strip(src, false))
  local in_directive = false
  for k, line in ipairs(lines) do
    if in_directive or line:match("^%s*#") then
      in_directive = line:sub(-1) == "\\"
      lines[k] = ""
    end
  end
  return lines
end

-- ============================================================= functions

local NOT_NAMES = {
  ["if"] = true, ["for"] = true, ["while"] = true, ["switch"] = true,
  ["return"] = true, ["sizeof"] = true, ["_Alignof"] = true,
  ["_Generic"] = true, ["__attribute__"] = true,
}

-- Returns the function name when head (the code between the previous
-- top-level ';', '{' or '}' and a top-level '{') is a function signature,
-- else nil.
local function function_name(head)
  local h = head:gsub("%s+$", "")
  if h:sub(-1) ~= ")" then return nil end
  -- An '=' outside parentheses makes the block an initialiser.
  local depth, open = 0, nil
  for k = 1, #h do
    local c = h:sub(k, k)
    if c == "(" then
      depth = depth + 1
    elseif c == ")" then
      depth = depth - 1
    elseif c == "=" and depth == 0 then
      return nil
    end
  end
  depth = 0
  for k = #h, 1, -1 do
    local c = h:sub(k, k)
    if c == ")" then
      depth = depth + 1
    elseif c == "(" then
      depth = depth - 1
      if depth == 0 then
        open = k
        break
      end
    end
  end
  if open == nil then return nil end
  local before = h:sub(1, open - 1):gsub("%s+$", "")
  local name = before:match("([%a_][%w_]*)$")
  if name == nil and before:sub(-1) == ")" then
    -- A function returning a function pointer: T (*name(params))(params).
    name = before:match("%(%s*%*[%s%*]*([%a_][%w_]*)%s*%(")
  end
  if name == nil or NOT_NAMES[name] then return nil end
  return name
end

-- Returns the functions of src as a list of {line, name, lines}, and an
-- error message when its braces do not balance (the list is then unsure).
local function find_functions(src)
  local funcs, problem = {}, nil
  -- head holds the top-level code since the last ';', '{' or '}', and
  -- head_line the line where its first non-blank character is.
  local depth, head, head_line, current = 0, {}, nil, nil
  for ln, line in ipairs(code_lines(src)) do
    local pos = 1
    while true do
      local j = line:find("[{};]", pos)
      if depth == 0 then
        local piece = line:sub(pos, (j or #line + 1) - 1)
        if head_line == nil and piece:find("%S") then head_line = ln end
        head[#head + 1] = piece
      end
      if j == nil then break end
      local c = line:sub(j, j)
      if c == "{" then
        if depth == 0 then
          local name = function_name(table.concat(head, " "))
          if name ~= nil then current = { line = head_line, name = name } end
        end
        depth = depth + 1
      elseif c == "}" then
        depth = depth - 1
        if depth < 0 then
          problem = problem or ("unbalanced '}' at line " .. ln)
          depth = 0
        end
        if depth == 0 and current ~= nil then
          current.lines = ln - current.line + 1
          funcs[#funcs + 1] = current
          current = nil
        end
      end
      if depth == 0 then head, head_line = {}, nil end
      pos = j + 1
    end
  end
  if depth ~= 0 then
    problem = problem or ("unclosed '{' at the end (depth " .. depth .. ")")
  end
  return funcs, problem
end

-- ================================================================ the tree

-- Returns the sorted .c and .h files and the sorted folders under the tops
-- of root, as paths relative to root; raises an error when root has none of
-- the tops.
local function scan_tree(root)
  local files, folders = {}, {}
  local q = shell_quote(root)
  for _, top in ipairs(TOPS) do
    if os.execute("test -d " .. shell_quote(root .. "/" .. top)) then
      local cd = "cd " .. q .. " && find " .. top
      for _, p in ipairs(command_lines(cd ..
          " -type f \\( -name '*.c' -o -name '*.h' \\) -print")) do
        files[#files + 1] = p
      end
      for _, d in ipairs(command_lines(cd .. " -type d -print")) do
        folders[#folders + 1] = d
      end
    end
  end
  if #folders == 0 then
    error(root .. ": no " .. table.concat(TOPS, "/ or ") .. "/ folder", 0)
  end
  table.sort(files)
  table.sort(folders)
  return files, folders
end

-- Returns true when the file at path can be opened for reading.
local function exists(path)
  local f = io.open(path, "rb")
  if f == nil then return false end
  f:close()
  return true
end

-- Resolves the include name of the file at from. Returns the path of the
-- file in the tree, or false for an existing file outside it, or nil and
-- an error message.
local function resolve(root, is_file, folders, from, name)
  if name:sub(1, 1) == "/" then
    if exists(name) then return false end
    return nil, string.format('"%s" not found', name)
  end
  -- The project's own form: the path from the root ("host/plan/cs_plan.h").
  local rooted = normalize(name)
  if is_file[rooted] then return rooted end
  local near = normalize(dirname(from) .. "/" .. name)
  if is_file[near] then return near end
  -- Found next to the includer but not a checked source (e.g. ../lib/x.h).
  if exists(root .. "/" .. near) then return false end
  local matches, seen = {}, {}
  for _, folder in ipairs(folders) do
    local p = normalize(folder .. "/" .. name)
    if is_file[p] and not seen[p] then
      seen[p] = true
      matches[#matches + 1] = p
    end
  end
  if #matches == 1 then return matches[1] end
  if #matches == 0 then return nil, string.format('"%s" not found', name) end
  return nil, string.format('"%s" is ambiguous: %s', name,
                            table.concat(matches, ", "))
end

-- ================================================================ cycles

-- Returns every elementary cycle of graph (folder -> set of folders) as a
-- list of folder lists, each starting and ending at its smallest folder,
-- in sorted order. limit caps the number returned.
local function find_cycles(graph, limit)
  local nodes = sorted_keys(graph)
  local rank = {}
  for k, v in ipairs(nodes) do rank[v] = k end
  local cycles = {}
  for _, start in ipairs(nodes) do
    local path, on_path = { start }, { [start] = true }
    local function walk(node)
      for _, next_node in ipairs(sorted_keys(graph[node] or {})) do
        if #cycles >= limit then return end
        if next_node == start then
          local c = table.move(path, 1, #path, 1, {})
          c[#c + 1] = start
          cycles[#cycles + 1] = c
        elseif rank[next_node] ~= nil and rank[next_node] > rank[start] and
            not on_path[next_node] then
          path[#path + 1], on_path[next_node] = next_node, true
          walk(next_node)
          path[#path], on_path[next_node] = nil, nil
        end
      end
    end
    walk(start)
  end
  return cycles
end

-- ============================================================= allowlist

-- Reads the allowlist under root. Returns a table path or "path:function"
-- -> {reason, line, used}, and a list of error messages.
local function read_allow(root)
  local allow, errors = {}, {}
  local f = io.open(root .. "/" .. ALLOW_FILE, "r")
  if f == nil then return allow, errors end
  local ln = 0
  for line in f:lines() do
    ln = ln + 1
    local entry, reason = line:match("^%s*(%S+)%s*(.-)%s*$")
    if entry ~= nil and entry:sub(1, 1) ~= "#" then
      local where = ALLOW_FILE .. ":" .. ln
      if reason == "" then
        errors[#errors + 1] = where .. ": no reason given for " .. entry
      elseif allow[entry] ~= nil then
        errors[#errors + 1] = where .. ": " .. entry .. " is listed twice"
      else
        allow[entry] = { reason = reason, line = ln, used = false }
      end
    end
  end
  f:close()
  return allow, errors
end

-- ================================================================== main

-- Checks the tree at root and prints the report. Returns the exit status.
local function main(args)
  local root, graph_only = nil, false
  for _, a in ipairs(args) do
    if a == "--graph-only" then
      graph_only = true
    elseif a:sub(1, 1) == "-" or root ~= nil then
      io.stderr:write("usage: lua5.4 scripts/layout.lua [--graph-only] [root]\n")
      return 2
    else
      root = a
    end
  end
  root = (root or "."):gsub("(.)/+$", "%1")

  local files, dirs = scan_tree(root)
  local is_file, sources = {}, {}
  for _, p in ipairs(files) do
    is_file[p] = true
    sources[p] = read_all(root .. "/" .. p)
  end

  -- The folder graph, from the resolved includes.
  local graph, errors = {}, {}
  for _, p in ipairs(files) do graph[dirname(p)] = graph[dirname(p)] or {} end
  for _, p in ipairs(files) do
    for _, inc in ipairs(find_includes(sources[p])) do
      local target, why = resolve(root, is_file, dirs, p, inc.name)
      if target == nil then
        errors[#errors + 1] = string.format("%s:%d: %s", p, inc.line, why)
      elseif target and dirname(target) ~= dirname(p) then
        graph[dirname(p)][dirname(target)] = true
      end
    end
  end
  local folders = sorted_keys(graph)
  for _, folder in ipairs(folders) do
    local to = sorted_keys(graph[folder])
    print(folder .. " -> " .. (#to > 0 and table.concat(to, ", ") or "(none)"))
  end
  if graph_only then
    for _, e in ipairs(errors) do io.stderr:write("error: ", e, "\n") end
    return #errors > 0 and 1 or 0
  end

  local failed = #errors > 0
  local cycles = find_cycles(graph, 1000)
  for _, c in ipairs(cycles) do print("cycle: " .. table.concat(c, " -> ")) end
  failed = failed or #cycles > 0

  local allow, allow_errors = read_allow(root)
  for _, e in ipairs(allow_errors) do errors[#errors + 1] = e end
  -- Prints an item over the limit; returns true when it is not allowed.
  local function report(key, text)
    local a = allow[key]
    if a == nil then
      print(text)
      return true
    end
    a.used = true
    print("allowed " .. text .. ": " .. a.reason)
    return false
  end
  local long_files, long_funcs = 0, 0
  for _, p in ipairs(files) do
    local n = count_lines(sources[p])
    if n > MAX_FILE_LINES then
      long_files = long_files + 1
      if report(p, string.format("long file: %s (%d lines)", p, n)) then
        failed = true
      end
    end
  end
  for _, p in ipairs(files) do
    local funcs, problem = find_functions(sources[p])
    if problem ~= nil then errors[#errors + 1] = p .. ": " .. problem end
    for _, fn in ipairs(funcs) do
      if fn.lines > MAX_FUNCTION_LINES then
        long_funcs = long_funcs + 1
        local text = string.format("long function: %s:%d %s (%d lines)", p,
                                   fn.line, fn.name, fn.lines)
        if report(p .. ":" .. fn.name, text) then failed = true end
      end
    end
  end
  for _, key in ipairs(sorted_keys(allow)) do
    local a = allow[key]
    if not a.used then
      errors[#errors + 1] = string.format(
        "%s:%d: %s is allowed but not over the limit; remove the line",
        ALLOW_FILE, a.line, key)
    end
  end
  for _, e in ipairs(errors) do print("error: " .. e) end
  failed = failed or #errors > 0

  print(string.format(
    "layout: %d files, %d folders, %d cycles, %d long files, " ..
    "%d long functions", #files, #folders, #cycles, long_files, long_funcs))
  return failed and 1 or 0
end

local ok, status = pcall(main, arg)
if not ok then
  io.stderr:write("layout: ", tostring(status), "\n")
  os.exit(2)
end
os.exit(status)
