/**
 * Domain errors, mapped to HTTP in one place (src/plugins/error-handler.ts).
 * Messages are shown to the API user: say which field or object, and what is wrong.
 */
export class DomainError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** 400: a field has a value the JSON schema could not catch (number, timezone, ...). */
export class InvalidFieldError extends DomainError {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(400, `${field}: ${problem}`);
  }
}

export class UnauthorizedError extends DomainError {
  constructor(message = 'missing or invalid API key: send Authorization: Bearer <key>') {
    super(401, message);
  }
}

export class ForbiddenError extends DomainError {
  constructor(message: string) {
    super(403, message);
  }
}

export class NotFoundError extends DomainError {
  constructor(entity: string, id: string) {
    super(404, `${entity} '${id}' does not exist`);
  }
}

export class ConflictError extends DomainError {
  constructor(message: string) {
    super(409, message);
  }
}

/** 422: well-formed, but refers to something that does not exist. */
export class UnprocessableError extends DomainError {
  constructor(message: string) {
    super(422, message);
  }
}
