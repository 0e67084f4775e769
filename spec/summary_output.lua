-- busted output handler: busted's plain terminal output, then the line CI reads,
-- "N passed, N failed" (errors count as failures), ", N skipped" for pending tests.
return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.plainTerminal"(options)

  busted.subscribe({ "suite", "end" }, function()
    local failed = handler.failuresCount + handler.errorsCount
    local line = ("%d passed, %d failed"):format(handler.successesCount, failed)
    if handler.pendingsCount > 0 then
      line = line .. (", %d skipped"):format(handler.pendingsCount)
    end
    io.write("\n", line, "\n")
    io.flush()
    return nil, true
  end, { priority = -1 })

  return handler
end
