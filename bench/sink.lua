-- What the benchmark jobs share: the sink their output argument names.
--   "null"  a Lua sink function that drops every record
--   "print" print() (stdout)
--   a path  write_as_text(path)
return function(stream, target)
  if target == "null" then return stream:add_sink(function() end) end
  if target == "print" then return stream:print() end
  return stream:write_as_text(target)
end
